"""Who may call which method: a policy per full method name; unlisted methods are denied.

Health and reflection are public so probes and stock tools (grpcurl) work without a credential.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.descriptor import ServiceDescriptor

from retail_common.context import Principal, PrincipalKind

__all__ = [
    "PUBLIC_INFRASTRUCTURE_METHODS",
    "MethodPolicy",
    "authenticated",
    "full_method_name",
    "public",
    "service_policies",
]

PUBLIC_INFRASTRUCTURE_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


class MethodPolicy:
    """Allowed principal kinds (None = any) and roles the principal must all hold; or public."""

    __slots__ = ("is_public", "kinds", "roles")

    def __init__(
        self,
        *,
        kinds: Iterable[PrincipalKind] | None = None,
        roles: Iterable[str] = (),
        is_public: bool = False,
    ) -> None:
        self.kinds: frozenset[PrincipalKind] | None = None if kinds is None else frozenset(kinds)
        self.roles: frozenset[str] = frozenset(roles)
        self.is_public = is_public
        if is_public and (self.kinds is not None or self.roles):
            raise ValueError("a public policy takes no kinds or roles")

    def denial(self, principal: Principal) -> str | None:
        """Why `principal` may not call the method, or None if it may. Never called for public ones."""
        if self.kinds is not None and principal.kind not in self.kinds:
            allowed = ", ".join(sorted(kind.value for kind in self.kinds))
            return f"principal kind {principal.kind.value} may not call this method (allowed: {allowed})"
        missing = sorted(self.roles - principal.roles)
        if missing:
            return "missing role(s): " + ", ".join(missing)
        return None

    def __repr__(self) -> str:
        if self.is_public:
            return "MethodPolicy(public)"
        kinds = None if self.kinds is None else sorted(self.kinds)
        return f"MethodPolicy(kinds={kinds}, roles={sorted(self.roles)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MethodPolicy) and (self.kinds, self.roles, self.is_public) == (
            other.kinds,
            other.roles,
            other.is_public,
        )

    def __hash__(self) -> int:
        return hash((self.kinds, self.roles, self.is_public))


def public() -> MethodPolicy:
    return MethodPolicy(is_public=True)


def authenticated() -> MethodPolicy:
    """Any principal with a valid credential."""
    return MethodPolicy()


def full_method_name(service: ServiceDescriptor, method: str) -> str:
    return f"/{service.full_name}/{method}"


def service_policies(
    service: ServiceDescriptor, policies: Mapping[str, MethodPolicy]
) -> dict[str, MethodPolicy]:
    """Key policies by full method name, checking that every method of `service` has exactly one.

    Failing here (at start) beats discovering an unreachable or unprotected method in production.
    """
    names = {method.name for method in service.methods}
    unknown = sorted(set(policies) - names)
    missing = sorted(names - set(policies))
    if unknown or missing:
        raise ValueError(
            f"{service.full_name} policies: unknown methods {unknown}, missing methods {missing}"
        )
    return {full_method_name(service, name): policy for name, policy in policies.items()}
