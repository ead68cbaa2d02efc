#!/usr/bin/env bash
# Stop the single-node Slurm started by scripts/start_slurm.sh (munged is left running).
set -uo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
for pidf in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid; do
    if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        $SUDO kill "$(cat "$pidf")"
    fi
done
echo "slurm stopped"
