#!/usr/bin/env bash
# Checks the deployment files without a Docker engine (CI has none):
#   - docker-compose.yml with dclint (the compose specification's schema
#     plus best practices: ports bound to an interface, quoting, ordering);
#   - Dockerfile with dockerfile-utils lint (instructions, arguments, flags);
#   - both with rules.mjs, this project's rules: no published RabbitMQ
#     management port, credentials only from ${VAR:?} variables, RabbitMQ
#     only in its profile, the API key from the environment and no secret
#     generated into container logs, a non-root user, pinned base images.
# The npm tools are installed, pinned, into a cache directory on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=${DEPLOY_LINT_DIR:-${TMPDIR:-/tmp}/onboarding-deploy-lint}
if [ ! -x "$tools/node_modules/.bin/dclint" ] || [ ! -x "$tools/node_modules/.bin/dockerfile-utils" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent --no-save \
    dclint@3.1.0 dockerfile-utils@0.16.3 js-yaml@4.1.0
fi
"$tools/node_modules/.bin/dclint" docker-compose.yml
problems=$("$tools/node_modules/.bin/dockerfile-utils" lint Dockerfile)
if [ -n "$problems" ]; then
  echo "$problems"
  exit 1
fi
NODE_PATH="$tools/node_modules" node scripts/deploy/rules.cjs docker-compose.yml Dockerfile
