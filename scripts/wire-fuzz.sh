#!/usr/bin/env bash
# The axon's request decoder under the fuzzer: scripts/fuzz.sh decode_request [SECONDS].
exec "$(dirname "$0")/fuzz.sh" decode_request "$@"
