#!/usr/bin/env bash
# Set up this machine (Docker engine, base image, .venv), then run the main job on the reference
# stack: build and start it with both colours healthy, switch the live colour through HAProxy's
# runtime API, and show the result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh

bluegreen up
bluegreen switch
bluegreen status
echo "deploy.sh: the stack answers at https://localhost (certificate: .bluegreen/tls/ca.pem)"
