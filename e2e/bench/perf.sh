#!/bin/sh
# perf.sh BENCH XLBD XDP-BASELINE OUTDIR [RATE]: runs the wire benchmark at a
# fixed rate (default 200000pps; '' for as fast as trafgen can), xlb then
# the baseline, and records each one's worker thread (the process's
# busiest) with perf for 6 s of its window, into OUTDIR/perf-xlbd.data and
# OUTDIR/perf-xdp-baseline.data.
# Run it as root under the lab lock; read a profile with
#   perf report -i OUTDIR/perf-xlbd.data --no-children --dso xlbd --sort sym --percentage relative
set -e
bench=$1 xlbd=$2 baseline=$3 out=$4 rate=${5-200000pps}
"$bench" -xlbd "$xlbd" -baseline "$baseline" -systems xlb,xdp-baseline -rate "$rate" -rounds 1 \
	-duration 12s -warmup 1s -o "$out/perf-run.md" >"$out/perf-run.out" 2>&1 &
for sys in xlbd xdp-baseline; do
	until p=$(pgrep -xo $sys); do sleep 0.2; done
	sleep 4
	worker=$(for t in /proc/$p/task/*; do echo "$(cut -d' ' -f1 "$t/schedstat") ${t##*/}"; done | sort -n | tail -1 | cut -d' ' -f2)
	echo "$sys: pid $p, worker thread $worker"
	perf record -e cpu-clock -F 4999 -g -t "$worker" -o "$out/perf-$sys.data" -- sleep 6
	while kill -0 "$p" 2>/dev/null; do sleep 0.2; done
done
wait
