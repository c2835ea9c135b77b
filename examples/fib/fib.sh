#!/bin/sh
# fib: for each number n (0 to 92) read from stdin, print the n-th Fibonacci number.
# It runs in a void that holds this script, /bin/sh and the libraries /bin/sh needs: nothing
# else. Shell arithmetic is 64-bit, hence the upper bound.
status=0
while read -r n; do
    case $n in
        '' | *[!0-9]*) echo "fib: '$n' is not a number from 0 to 92" >&2; status=2; continue ;;
    esac
    n=${n#"${n%%[!0]*}"}  # no leading zeros (they would mean octal)
    n=${n:-0}
    if [ "${#n}" -gt 2 ] || [ "$n" -gt 92 ]; then
        echo "fib: $n is more than 92 (the largest that fits in 64 bits)" >&2
        status=2
        continue
    fi
    a=0 b=1 i=0
    while [ "$i" -lt "$n" ]; do
        t=$((a + b)) a=$b b=$t i=$((i + 1))
    done
    echo "$a"
done
exit $status
