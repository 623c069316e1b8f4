# Counts `ss -tan` lines per configured port, side and state.
# Usage: ss -tan | awk -v ports=22,80 -f ss_count.awk
# Prints "port side state count"; addresses end in ":port" ("[::1]:22" for IPv6).
BEGIN {
    n = split(ports, list, ",")
    for (i = 1; i <= n; i++) wanted[list[i]] = 1
}
NR > 1 {
    lp = $4; sub(/.*:/, "", lp)
    rp = $5; sub(/.*:/, "", rp)
    if (lp in wanted) count[lp " local " $1]++
    if (rp in wanted) count[rp " remote " $1]++
}
END { for (k in count) print k, count[k] }
