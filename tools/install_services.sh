#!/usr/bin/env bash
# Installs the servers the distributed tests start for themselves (tests/servers.py): PostgreSQL for a
# shared Optuna study, and a single-node SLURM cluster (munge, slurmctld, slurmd, slurmdbd with MariaDB
# for accounting: without it `sacct` fails and submitit cannot tell a cancelled job's state).
# Debian/Ubuntu, as root or with sudo. Idempotent: does nothing when everything is there already.
# Only installs: no service is started or enabled (the tests run their own, on throwaway data dirs).
set -euo pipefail
packages=(postgresql munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
commands=(initdb pg_ctl munged slurmctld slurmd slurmdbd sbatch sacct mariadbd mariadb-install-db)

have_all() {
  for cmd in "${commands[@]}"; do
    command -v "$cmd" > /dev/null || compgen -G "/usr/lib/postgresql/*/bin/$cmd" > /dev/null || return 1
  done
}

if have_all; then
  echo "install_services: PostgreSQL, SLURM, munge and MariaDB already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: the packages' scripts must not start their system services (the tests start their own)
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" > /dev/null && $sudo chmod +x "$policy" && added_policy=1
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${packages[@]}" > /dev/null
if [ -n "$added_policy" ]; then $sudo rm -f "$policy"; fi
have_all || { echo "install_services: installed ${packages[*]} but a command is still missing" >&2; exit 1; }
echo "install_services: installed ${packages[*]}"
