#!/usr/bin/env bash
# Print the plugin start time from the compiled-component cache.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p rumoci --test driver -- --ignored --nocapture start_time_from_cache
