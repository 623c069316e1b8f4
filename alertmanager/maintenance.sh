#!/bin/sh
# Maintenance windows (alertmanager/maintenance.txt) as Alertmanager silences.
#
#   maintenance.sh check FILE   validate FILE: errors name the line and field, exit 2
#   maintenance.sh sync FILE    one pass: a silence for every window not yet ended that
#                               has none, and the silences of windows no longer in the
#                               file expired
#   maintenance.sh watch FILE   wait for Alertmanager, then sync every
#                               VIGIA_MAINTENANCE_INTERVAL seconds (30); a bad edit is
#                               logged and changes nothing
#
# Alertmanager is reached with AMTOOL (amtool) at ALERTMANAGER_URL
# (http://127.0.0.1:9093). POSIX sh and awk only: it runs in the Alertmanager image
# (busybox). vigia-ping reads the same file for the status board
# (exporters/ping/src/maintenance.rs: the same grammar; tests/stack/validate.sh holds the
# two to it).
#
# A silence made here has the window's matcher (site="..." or target="...") and
# vigia_maintenance!="maintenance.txt", which every alert satisfies and which marks the
# silences this script owns; its comment ends with the window's key (a checksum of the
# line's fields), so a window gets its silence once. A silence an operator expires
# early is not made again; editing the line (a new key) makes a new one.
set -eu

amtool=${AMTOOL:-amtool}
am_url=${ALERTMANAGER_URL:-http://127.0.0.1:9093}
mark='vigia_maintenance!="maintenance.txt"'
tab=$(printf '\t')

# The file's windows, one per line: start, end, end (Unix seconds), label, value,
# reason, line number, tab-separated. Errors go to stderr with exit status 2.
parse() {
  awk -v file="$(basename "$1")" '
    function fail(field, msg) {
      printf "%s line %d: %s: %s\n", file, NR, field, msg > "/dev/stderr"
      failed = 1
      exit 2
    }
    function leap(y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
    # Days since 1970-01-01 (proleptic Gregorian), without mktime (not in every awk).
    function days(y, m, d,   era, yoe, doy, doe) {
      y -= (m <= 2)
      era = int((y >= 0 ? y : y - 399) / 400)
      yoe = y - era * 400
      doy = int((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1
      doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
      return era * 146097 + doe - 719468
    }
    # RFC 3339 with seconds and Z or +hh:mm / -hh:mm, as amtool reads it; -1 if not.
    function epoch(t,   y, mo, d, h, mi, s, off, dim) {
      if (t !~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](Z|[-+][0-9][0-9]:[0-9][0-9])$/)
        return -1
      y = substr(t, 1, 4) + 0; mo = substr(t, 6, 2) + 0; d = substr(t, 9, 2) + 0
      h = substr(t, 12, 2) + 0; mi = substr(t, 15, 2) + 0; s = substr(t, 18, 2) + 0
      dim = substr("312831303130313130313031", mo * 2 - 1, 2) + (mo == 2 && leap(y))
      if (mo < 1 || mo > 12 || d < 1 || d > dim || h > 23 || mi > 59 || s > 59) return -1
      off = 0
      if (length(t) == 25) {
        if (substr(t, 21, 2) + 0 > 23 || substr(t, 24, 2) + 0 > 59) return -1
        off = (substr(t, 21, 2) * 3600 + substr(t, 24, 2) * 60) * (substr(t, 20, 1) == "-" ? -1 : 1)
      }
      return days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off
    }
    # The first blank-separated field of rest (rest keeps what follows it).
    function field(   n) {
      sub(/^[ \t]+/, "", rest)
      n = match(rest, /[ \t]/)
      if (n == 0) { f = rest; rest = ""; return f }
      f = substr(rest, 1, n - 1)
      rest = substr(rest, n)
      return f
    }
    {
      sub(/\r$/, "")
      if ($0 ~ /^[ \t]*(#|$)/) next
      rest = $0
      start = field(); end = field()
      s = epoch(start)
      if (s < 0) fail("start", "\"" start "\" is not a time like 2026-12-05T02:00:00Z or 2026-12-05T02:00:00-03:00")
      e = epoch(end)
      if (e < 0) fail("end", "\"" end "\" is not a time like 2026-12-05T02:00:00Z or 2026-12-05T02:00:00-03:00")
      if (e <= s) fail("end", end " is not after the start, " start)
      sub(/^[ \t]+/, "", rest)
      eq = index(rest, "=")
      if (eq == 0) fail("what", "expected site=<name> or target=<name>")
      key = substr(rest, 1, eq - 1)
      rest = substr(rest, eq + 1)
      if (substr(rest, 1, 1) == "\"") {
        close_at = index(substr(rest, 2), "\"")
        if (close_at == 0) fail("what", "unterminated double quote")
        value = substr(rest, 2, close_at - 1)
        rest = substr(rest, close_at + 2)
      } else {
        n = match(rest, /[ \t]/)
        if (n == 0) { value = rest; rest = "" } else { value = substr(rest, 1, n - 1); rest = substr(rest, n) }
      }
      if (value == "") fail("what", key "= needs a name")
      if (value ~ /[\001-\037\177"\\]/) fail("what", "\"" value "\" is not a valid name")
      if (key != "site" && key != "target") fail("what", "\"" key "\": a window is for a site=<name> or a target=<name>")
      sub(/^[ \t]+/, "", rest); sub(/[ \t]+$/, "", rest)
      if (rest == "") fail("reason", "missing: say why (it becomes the silence'"'"'s comment)")
      if (rest ~ /[\001-\037\177]/) fail("reason", "must not contain control characters")
      printf "%s\t%s\t%d\t%s\t%s\t%s\t%d\n", start, end, e, key, value, rest, NR
    }
  ' "$1"
}

am() {
  "$amtool" --alertmanager.url="$am_url" "$@"
}

# "ID KEY" of each silence of ours in amtool's table (active and pending, or with
# --expired the ended ones).
owned() {
  am silence query -o extended "$@" "$mark" | awk '
    NR > 1 && match($0, /\[vigia-maintenance [0-9]+\]/) {
      print $1, substr($0, RSTART + 19, RLENGTH - 20)
    }'
}

sync_once() {
  windows=$(parse "$1") || return 2
  now=$(date -u +%s)
  active=$(owned) || return 1
  ended=$(owned --expired) || return 1
  keyed=$(printf '%s\n' "$windows" | while IFS="$tab" read -r start end end_s label value reason line; do
    [ -n "$start" ] || continue
    key=$(printf '%s %s %s=%s %s' "$start" "$end" "$label" "$value" "$reason" | cksum | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$start" "$end" "$end_s" "$label" "$value" "$reason" "$line"
  done)
  printf '%s\n' "$keyed" | while IFS="$tab" read -r key start end end_s label value reason line; do
    [ -n "$key" ] || continue
    [ "$end_s" -gt "$now" ] || continue
    if printf '%s\n%s\n' "$active" "$ended" | awk -v k="$key" '$2 == k { found = 1 } END { exit !found }'; then
      continue
    fi
    id=$(am silence add --author=vigia-maintenance --start="$start" --end="$end" \
      --comment="maintenance.txt line $line: $reason [vigia-maintenance $key]" \
      "$label=\"$value\"" "$mark")
    echo "maintenance: $label=$value silenced from $start to $end ($reason): silence $id"
  done
  printf '%s\n' "$active" | while read -r id key; do
    [ -n "$id" ] || continue
    if ! printf '%s\n' "$keyed" | awk -F "$tab" -v k="$key" '$1 == k { found = 1 } END { exit !found }'; then
      am silence expire "$id"
      echo "maintenance: silence $id expired (its window is no longer in the file)"
    fi
  done
}

case ${1:-} in
  check)
    parse "${2:?usage: maintenance.sh check FILE}" >/dev/null
    ;;
  sync)
    sync_once "${2:?usage: maintenance.sh sync FILE}"
    ;;
  watch)
    file=${2:?usage: maintenance.sh watch FILE}
    interval=${VIGIA_MAINTENANCE_INTERVAL:-30}
    until am silence query -q "$mark" >/dev/null 2>&1; do sleep 1; done
    last_error=
    while :; do
      if out=$(sync_once "$file" 2>&1); then
        [ -z "$out" ] || printf '%s\n' "$out" >&2
        last_error=
      elif [ "$out" != "$last_error" ]; then
        printf 'maintenance: %s (the silences stay as they were)\n' "$out" >&2
        last_error=$out
      fi
      sleep "$interval"
    done
    ;;
  *)
    echo "usage: maintenance.sh check|sync|watch FILE" >&2
    exit 2
    ;;
esac
