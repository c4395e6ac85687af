#!/usr/bin/env bash
# Regenerate constraints/cluster.txt: the exact releases pip resolves for a GPU cluster install,
#   pip install -e ".[cluster]" -c constraints/cluster.txt
# with the `qlora` extra's bitsandbytes pinned as well (a constraint installs nothing by itself),
# found by a dry run (package metadata only, nothing the size of a CUDA wheel is downloaded),
# then checked: a second dry run under the new pins must resolve to exactly those pins.
#   VLLM  the vllm release to pin (default 0.33.0: 0.34.0 asks for flashinfer-python==0.7.3,
#         which PyPI does not have as of 2026-12-05)
# Resolved for the running interpreter and platform (CPython 3.11, Linux x86_64 here); run it
# with the cluster's Python to lock for another one.
set -euo pipefail
cd "$(dirname "$0")/.."
vllm=${VLLM:-0.33.0}
python=${PYTHON:-python3}
report=$(mktemp)
trap 'rm -f "$report" "$report.check"' EXIT
"$python" -m pip install --dry-run --ignore-installed --quiet --report "$report" \
	-e ".[cluster,qlora]" "vllm==$vllm"
{
	echo "# GPU cluster install: pip install -e \".[cluster]\" -c constraints/cluster.txt"
	echo "# Made by constraints/lock-cluster.sh (vllm==$vllm, $("$python" -c 'import platform; print(platform.python_implementation(), platform.python_version(), platform.system(), platform.machine())'))."
	"$python" - "$report" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted(
    (item["metadata"]["name"].lower(), item["metadata"]["version"])
    for item in report["install"]
    if item["metadata"]["name"].lower() != "codeift"
)
print("\n".join(f"{name}=={version}" for name, version in pins))
PY
} >constraints/cluster.txt.new
"$python" -m pip install --dry-run --ignore-installed --quiet --report "$report.check" \
	-e ".[cluster,qlora]" -c constraints/cluster.txt.new
"$python" - "$report.check" constraints/cluster.txt.new <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
resolved = {
    f"{i['metadata']['name'].lower()}=={i['metadata']['version']}"
    for i in report["install"]
    if i["metadata"]["name"].lower() != "codeift"
}
pinned = {line.strip() for line in open(sys.argv[2]) if line.strip() and not line.startswith("#")}
if resolved != pinned:
    sys.exit(f"the pins do not resolve to themselves: {sorted(resolved ^ pinned)}")
print(f"{len(pinned)} pins resolve to themselves")
PY
mv constraints/cluster.txt.new constraints/cluster.txt
