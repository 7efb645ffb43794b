# SPDX-License-Identifier: MIT
# Bash workload for tests/real/cases.sh: arrays, associative arrays, string expansions, subshells, pipes; deterministic output.
set -euo pipefail

declare -A assoc
declare -a arr
for ((i = 0; i < 30000; i++)); do
  key="k$(( (i * 7919) % 10007 ))"
  assoc[$key]+="$i,"
  arr+=("${key}:${i}")
done
echo "assoc ${#assoc[@]} arr ${#arr[@]}"

total=0
for key in "${!assoc[@]}"; do
  v=${assoc[$key]}
  n=${v//[^,]/}
  total=$((total + ${#n}))
done
echo "total $total"

# Pattern expansions allocate and free many strings.
s=""
for ((i = 0; i < 1000; i++)); do
  s+="word$i "
done
t=${s//word/W}
u=${t^^}
echo "strings ${#s} ${#t} ${#u} ${u:0:20}"
unset 'arr[5]' 'arr[100]'
arr=("${arr[@]:10:20000}")
echo "slice ${#arr[@]} ${arr[0]} ${arr[-1]}"

# Subshells, command substitutions, pipes and here-documents.
sum=0
for ((i = 0; i < 20; i++)); do
  x=$(echo "$i" | tr 0-9 a-j)
  sum=$((sum + ${#x}))
done
echo "subst $sum"
count=$(printf '%s\n' "${arr[@]}" | cut -d: -f1 | sort -u | wc -l)
echo "pipe $count"
while read -r a b; do
  echo "heredoc $b $a"
done <<EOF
one 1
two 2
EOF
f() { local -a loc=("$@"); echo "${#loc[@]} ${loc[*]: -1}"; }
echo "func $(f "${arr[@]:0:500}")"
