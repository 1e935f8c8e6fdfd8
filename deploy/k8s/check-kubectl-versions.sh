#!/usr/bin/env bash
# Renders every overlay with this machine's kubectl and with Debian's kubernetes-client
# (kubectl 1.20, kustomize v2.0.3: what .ci/run installs on a fresh machine), the package
# extracted into a temporary folder, not installed, and compares the two renderings object
# by object. They hold the same objects, byte for byte; only the order differs (kustomize
# v2 puts the PersistentVolumeClaim last, v5 after the Services), which `kubectl apply`
# does not mind.
#   deploy/k8s/check-kubectl-versions.sh [path/to/old/kubectl]
set -euo pipefail
cd "$(dirname "$0")"
old="${1:-}"
if [ -z "$old" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq kubernetes-client && dpkg -x kubernetes-client_*.deb kc)
  old="$tmp/kc/usr/bin/kubectl"
fi
new="$(command -v kubectl)"
echo "new: $("$new" version --client 2>/dev/null | head -2 | tr '\n' ' ')"
echo "old: $("$old" version --client 2>/dev/null | head -1)"
objects() {  # one object per line (its YAML, newlines escaped), sorted
  "$1" kustomize "$2" 2>/dev/null | python3 -c '
import sys
docs = sys.stdin.read().strip().split("\n---\n")
print("\n".join(sorted(d.strip().replace("\\", "\\\\").replace("\n", "\\n") for d in docs)))'
}
status=0
for overlay in overlays/*/; do
  if diff <(objects "$new" "$overlay") <(objects "$old" "$overlay") >/dev/null; then
    echo "same objects: $overlay ($(objects "$new" "$overlay" | wc -l))"
  else
    echo "DIFFERENT: $overlay"; status=1
  fi
done
exit $status
