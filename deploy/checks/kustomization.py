"""Check deploy/k8s/kustomization.yaml lists exactly the manifests in deploy/k8s (examples excepted).

kubectl/kustomize are not available offline, so this stands in for `kustomize build`'s file checks: a
manifest added but not listed would silently never be applied. Run by `make deploy-check`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"


def main() -> int:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {
        str(path.relative_to(K8S))
        for path in K8S.rglob("*.yaml")
        if path.name != "kustomization.yaml" and not path.name.endswith(".example.yaml")
    }
    problems = [f"listed but missing: {name}" for name in sorted(listed - present)]
    problems += [f"not listed in kustomization.yaml: {name}" for name in sorted(present - listed)]
    for problem in problems:
        print(f"deploy/k8s: {problem}", file=sys.stderr)
    if not problems:
        print(f"deploy/k8s/kustomization.yaml: all {len(listed)} manifests listed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
