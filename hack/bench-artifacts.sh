#!/usr/bin/env bash
# Measures artifacts.Install against cp -a / GNU tar, each followed by
# sync -f, side by side on the same disk, on a generated payload.
#
#   hack/bench-artifacts.sh [size-MiB] [rounds]     (default 1024 3)
#
# Work files go to $BENCH_DIR (default /var/tmp, same disk as /work) and are
# deleted at the end. Results: one line per run, then a summary table
# (median of the rounds) on stdout.
set -euo pipefail

size_mib=${1:-1024}
rounds=${2:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kd-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "# building the test binary" >&2
(cd "$repo" && go test -c -o "$work/artifacts.test" ./artifacts)
bin=$work/artifacts.test

job() { # job JSON -> the BENCH line of the helper, with peak RSS appended
	local out rss
	out=$(KATA_DEPLOY_BENCH_JOB=$1 /usr/bin/time -f 'maxrss_kb=%M' "$bin" \
		-test.run='^TestBenchHelper$' -test.count=1 2>&1)
	rss=$(grep -o 'maxrss_kb=[0-9]*' <<<"$out")
	echo "$(grep '^BENCH' <<<"$out") $rss"
}

ms() { # ms command... -> elapsed milliseconds
	local t0 t1
	t0=$(date +%s%N)
	"$@"
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

fresh() { # fresh dir: an empty host root, the previous one deleted and synced
	rm -rf "$work/host"
	mkdir -p "$work/host/opt"
	sync -f "$work"
}

echo "# generating a ${size_mib} MiB payload" >&2
job "{\"Op\":\"generate\",\"Payload\":\"$work/payload\",\"Size\":$((size_mib << 20))}" >&2
tar -C "$work/payload" -cf - . | zstd -q -T2 -3 -o "$work/payload.tar.zst"
tar -C "$work/payload" -cf - . | xz -T2 -1 >"$work/payload.tar.xz"
ls -l "$work/payload.tar.zst" "$work/payload.tar.xz" >&2
du -sh "$work/payload" >&2
sync -f "$work"

declare -A res
add() { res[$1]="${res[$1]:-} $2"; }

install() { # install payload [perfile] -> elapsed ms of the installer's run
	local pf=false
	[[ ${2:-} == perfile ]] && pf=true
	local line
	line=$(job "{\"Op\":\"install\",\"Host\":\"$work/host\",\"Payload\":\"$1\",\"PerFileSync\":$pf}")
	echo "$line" >&2
	sed -E 's/.*elapsed_ms=([0-9.]+).*maxrss_kb=([0-9]+).*/\1 \2/' <<<"$line"
}

for r in $(seq "$rounds"); do
	echo "# round $r" >&2
	fresh
	t=$(ms bash -c "cp -a '$work/payload/opt/kata' '$work/host/opt/kata' && sync -f '$work/host'")
	echo "cp -a + sync -f: $t ms" >&2
	add cp "$t"

	fresh
	read -r t rss < <(install "$work/payload")
	add dir "$t"
	add dir_rss "$rss"
	# Unchanged: again, twice (the first run after an install may refresh
	# nothing; both are reported).
	read -r t rss < <(install "$work/payload")
	add again "$t"

	fresh
	read -r t rss < <(install "$work/payload" perfile)
	add perfile "$t"

	fresh
	t=$(ms bash -c "tar --zstd -xf '$work/payload.tar.zst' -C '$work/host/opt' && sync -f '$work/host'")
	echo "tar --zstd -xf + sync -f: $t ms" >&2
	add tarzst "$t"

	fresh
	read -r t rss < <(install "$work/payload.tar.zst")
	add zst "$t"
	add zst_rss "$rss"

	fresh
	t=$(ms bash -c "tar -xJf '$work/payload.tar.xz' -C '$work/host/opt' && sync -f '$work/host'")
	echo "tar -xJf + sync -f: $t ms" >&2
	add tarxz "$t"

	fresh
	read -r t rss < <(install "$work/payload.tar.xz")
	add xz "$t"
	add xz_rss "$rss"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m() { median <<<"${res[$1]}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo
echo "payload: ${size_mib} MiB, $rounds rounds, medians (ms); peak RSS in MiB"
printf '| %-44s | %8s | %8s | %6s |\n' case installer baseline ratio
printf '| %-44s | %8s | %8s | %6s |\n' "directory vs cp -a + sync -f" "$(m dir)" "$(m cp)" "$(ratio "$(m dir)" "$(m cp)")"
printf '| %-44s | %8s | %8s | %6s |\n' "directory, fsync per file vs cp -a + sync -f" "$(m perfile)" "$(m cp)" "$(ratio "$(m perfile)" "$(m cp)")"
printf '| %-44s | %8s | %8s | %6s |\n' ".tar.zst vs tar --zstd -xf + sync -f" "$(m zst)" "$(m tarzst)" "$(ratio "$(m zst)" "$(m tarzst)")"
printf '| %-44s | %8s | %8s | %6s |\n' ".tar.xz vs tar -xJf + sync -f" "$(m xz)" "$(m tarxz)" "$(ratio "$(m xz)" "$(m tarxz)")"
printf '| %-44s | %8s | %8s | %6s |\n' "re-install unchanged directory" "$(m again)" "-" "-"
echo "peak RSS: directory $(($(m dir_rss) / 1024)) MiB, tar.zst $(($(m zst_rss) / 1024)) MiB, tar.xz $(($(m xz_rss) / 1024)) MiB"
