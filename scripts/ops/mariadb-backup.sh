#!/usr/bin/env bash
# MariaDB logical backup of one database: a consistent snapshot of InnoDB
# tables without locking writers (--single-transaction). For large
# databases use mariabackup (physical, incremental) where installed.
#   scripts/ops/mariadb-backup.sh onboarding backups/onboarding-$(date +%F).sql.gz
# Restore into a new server: mariadb < <(gunzip -c backups/onboarding-….sql.gz)
set -euo pipefail
database=${1:?usage: mariadb-backup.sh DATABASE BACKUP_FILE.sql.gz}
backup=${2:?usage: mariadb-backup.sh DATABASE BACKUP_FILE.sql.gz}
mariadb-dump ${MARIADB_OPTS:-} --single-transaction --quick --routines --databases "$database" | gzip > "$backup"
echo "tables: $(gunzip -c "$backup" | grep -c '^CREATE TABLE')  size: $(du -h "$backup" | cut -f1)"
