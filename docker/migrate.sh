#!/bin/sh
# The one-shot "migrate" service of docker/compose.yaml; everything else starts once it has succeeded.
#  1. As the cluster's administrator (DATABASE_ADMIN_URL): create or correct the trust zones' database roles
#     (ops/db_zones.py), set their passwords from the Docker secrets named by DB_ROLE_PASSWORD_<ZONE>_FILE and
#     hand every table to the schema owner.
#  2. As the schema owner (DATABASE_URL, <prefix>migrate): the migrations. No other role may change the schema.
#  3. As the administrator again: each role's privileges on the tables the migrations made. Both db_roles runs
#     converge on the declaration, so running this service again changes nothing.
set -eu
as_admin() {
  DATABASE_URL="$DATABASE_ADMIN_URL" DATABASE_PASSWORD_FILE="$DATABASE_ADMIN_PASSWORD_FILE" "$@"
}
as_admin python manage.py db_roles
python manage.py migrate --noinput
as_admin python manage.py db_roles
