#!/bin/sh
# Container entrypoint: secrets may be given as files (the Docker/Kubernetes convention for mounted
# secrets): for each variable below, VAR_FILE=<path> exports VAR with that file's content, e.g.
# SERVICE_CREDENTIAL_FILE=/credentials/pricing.key -> SERVICE_CREDENTIAL=<the key>. Only these names:
# other *_FILE variables (SSL_CERT_FILE, ...) mean a path to their own programs and are left alone.
set -eu
for var in SERVICE_CREDENTIAL DATABASE_URL WEBHOOK_SECRETS_KEY; do
    eval "path=\${${var}_FILE:-}"
    [ -n "$path" ] || continue
    if [ ! -r "$path" ]; then
        echo "retail-entrypoint: ${var}_FILE=$path is not readable" >&2
        exit 2
    fi
    value=$(cat "$path")
    export "$var=$value"
    unset "${var}_FILE"
done
exec "$@"
