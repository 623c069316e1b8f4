#!/bin/sh
# Entrypoint of the snmp-exporter service: writes snmp_exporter's credentials (its
# `auths:` section) from the secret files and .env, then starts snmp_exporter with
# snmp/snmp.yml (the modules) and that file.
#
# Why rendered and not a static file: snmp_exporter 0.28 takes secrets from nowhere but its
# config file. Its --config.expand-environment-variables covers only `username`,
# `password` and `priv_password`, not `community`, and reads the environment, not files.
# So the community and the SNMPv3 passphrases stay in secrets/ (never in the repository)
# and are written here, into a tmpfs only this container's user can read.
#
# The credentials a device's `auth` label (prometheus/targets/snmp.yml) can name:
#   v2c  SNMPv2c, community from secrets/snmp_community
#   v3   SNMPv3 authPriv: user SNMP_V3_USERNAME, SNMP_V3_AUTH_PROTOCOL (default SHA) with
#        secrets/snmp_v3_auth_password, SNMP_V3_PRIV_PROTOCOL (default AES) with
#        secrets/snmp_v3_priv_password
# Each is on when its secrets are non-empty; a device naming one that is off is not
# scraped (SnmpDeviceUnreachable, and "Unknown auth" in the scrape error).
#
# After changing a secret or .env: docker compose up -d snmp-exporter (or restart it).
# Paths can be moved for the offline validation and the tests.
set -eu

secrets=${VIGIA_SECRETS_DIR:-/run/secrets}
run_dir=${VIGIA_SNMP_RUN_DIR:-/run/vigia}
modules=${VIGIA_SNMP_MODULES:-/etc/snmp_exporter/snmp.yml}
auths=$run_dir/auths.yml

fail() {
  echo "snmp-exporter config: $*" >&2
  exit 2
}

# A secret's value: the file's content without trailing newlines. A file that is there but
# unreadable is an error, not "off": credentials must not vanish silently.
secret() {
  [ -e "$secrets/$1" ] || return 0
  [ -r "$secrets/$1" ] || fail "secrets/$1 is not readable by uid $(id -u) (make it 0644; secrets/ itself stays 0700)"
  value=$(cat "$secrets/$1")
  case $value in *'
'*) fail "secrets/$1 holds more than one line" ;; esac
  printf '%s' "$value"
}

# YAML single-quoted scalar: the value as given, with quotes doubled.
quote() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

community=$(secret snmp_community)
v3_auth=$(secret snmp_v3_auth_password)
v3_priv=$(secret snmp_v3_priv_password)
v3_user=${SNMP_V3_USERNAME:-}
v3_auth_protocol=${SNMP_V3_AUTH_PROTOCOL:-SHA}
v3_priv_protocol=${SNMP_V3_PRIV_PROTOCOL:-AES}

case $v3_auth_protocol in
  MD5 | SHA | SHA224 | SHA256 | SHA384 | SHA512) ;;
  *) fail "SNMP_V3_AUTH_PROTOCOL must be one of MD5, SHA, SHA224, SHA256, SHA384, SHA512, not '$v3_auth_protocol'" ;;
esac
case $v3_priv_protocol in
  DES | AES | AES192 | AES256 | AES192C | AES256C) ;;
  *) fail "SNMP_V3_PRIV_PROTOCOL must be one of DES, AES, AES192, AES256, AES192C, AES256C, not '$v3_priv_protocol'" ;;
esac
v3=off
if [ -n "$v3_user$v3_auth$v3_priv" ]; then
  [ -n "$v3_user" ] || fail "secrets/snmp_v3_auth_password or snmp_v3_priv_password is set but SNMP_V3_USERNAME is empty"
  [ -n "$v3_auth" ] || fail "SNMP_V3_USERNAME is set but secrets/snmp_v3_auth_password is empty (v3 is authPriv only)"
  [ -n "$v3_priv" ] || fail "SNMP_V3_USERNAME is set but secrets/snmp_v3_priv_password is empty (v3 is authPriv only)"
  # RFC 3414's key derivation wants at least 8 octets; agents (net-snmp) refuse shorter.
  [ ${#v3_auth} -ge 8 ] || fail "secrets/snmp_v3_auth_password is shorter than 8 characters (SNMPv3 refuses it)"
  [ ${#v3_priv} -ge 8 ] || fail "secrets/snmp_v3_priv_password is shorter than 8 characters (SNMPv3 refuses it)"
  v3=on
fi

mkdir -p "$run_dir"
umask 077
{
  echo "# Written by snmp/render.sh at container start; edit .env or secrets/, not this file."
  if [ -z "$community" ] && [ $v3 = off ]; then
    echo "auths: {}"
  else
    echo "auths:"
  fi
  if [ -n "$community" ]; then
    echo "  v2c:"
    echo "    version: 2"
    echo "    community: $(quote "$community")"
  fi
  if [ $v3 = on ]; then
    echo "  v3:"
    echo "    version: 3"
    echo "    security_level: authPriv"
    echo "    username: $(quote "$v3_user")"
    echo "    auth_protocol: $v3_auth_protocol"
    echo "    password: $(quote "$v3_auth")"
    echo "    priv_protocol: $v3_priv_protocol"
    echo "    priv_password: $(quote "$v3_priv")"
  fi
} >"$auths.tmp"
mv "$auths.tmp" "$auths"
echo "snmp-exporter config: credentials v2c $([ -n "$community" ] && echo on || echo off), v3 $v3" >&2

if [ "${VIGIA_SNMP_RENDER_ONLY:-}" = 1 ]; then
  exit 0
fi
exec /bin/snmp_exporter --config.file="$modules" --config.file="$auths" "$@"
