#!/usr/bin/env bats
# Tests for utils/split_scp.pl: even splits, speaker-preserving splits, errors, -j form.

setup() {
  REPO="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd)"
  SPLIT="${REPO}/utils/split_scp.pl"
  D="${BATS_TEST_TMPDIR}"
  for i in $(seq -w 1 10); do echo "utt${i} /audio/utt${i}.wav"; done > "${D}/wav.scp"
  # Speakers (sorted): A has 4 utterances, B 1, C 3, D 2.
  paste -d ' ' <(cut -d ' ' -f 1 "${D}/wav.scp") <(printf '%s\n' A A A A B C C C D D) \
    > "${D}/utt2spk"
}

@test "even split: sizes differ by at most one, order and content kept" {
  run "${SPLIT}" "${D}/wav.scp" "${D}/o.1" "${D}/o.2" "${D}/o.3"
  [ "$status" -eq 0 ]
  [ "$(wc -l < "${D}/o.1")" -eq 4 ]
  [ "$(wc -l < "${D}/o.2")" -eq 3 ]
  [ "$(wc -l < "${D}/o.3")" -eq 3 ]
  cat "${D}/o.1" "${D}/o.2" "${D}/o.3" | cmp - "${D}/wav.scp"
  [ "$(head -n 1 "${D}/o.2")" = "utt05 /audio/utt05.wav" ]
}

@test "splitting into exactly as many parts as lines" {
  outs=(); for i in $(seq 10); do outs+=("${D}/one.${i}"); done
  run "${SPLIT}" "${D}/wav.scp" "${outs[@]}"
  [ "$status" -eq 0 ]
  for i in $(seq 10); do [ "$(wc -l < "${D}/one.${i}")" -eq 1 ]; done
}

@test "--utt2spk keeps every speaker in one part" {
  run "${SPLIT}" --utt2spk="${D}/utt2spk" "${D}/wav.scp" "${D}/s.1" "${D}/s.2" "${D}/s.3"
  [ "$status" -eq 0 ]
  cat "${D}/s.1" "${D}/s.2" "${D}/s.3" | cmp - "${D}/wav.scp"
  for i in 1 2 3; do [ -s "${D}/s.${i}" ]; done
  # Each speaker appears in exactly one output.
  for i in 1 2 3; do
    cut -d ' ' -f 1 "${D}/s.${i}" | grep -Fwf - "${D}/utt2spk" | cut -d ' ' -f 2 | sort -u
  done | sort | uniq -d > "${D}/dup_speakers"
  [ ! -s "${D}/dup_speakers" ]
  # Balanced as well as whole speakers allow: A | B C | D.
  [ "$(wc -l < "${D}/s.1")" -eq 4 ]
  [ "$(wc -l < "${D}/s.2")" -eq 4 ]
  [ "$(wc -l < "${D}/s.3")" -eq 2 ]
}

@test "--utt2spk FILE (space form) works too" {
  run "${SPLIT}" --utt2spk "${D}/utt2spk" "${D}/wav.scp" "${D}/t.1" "${D}/t.2"
  [ "$status" -eq 0 ]
  [ "$(cut -d ' ' -f 1 "${D}/t.1" | tail -n 1)" = "utt05" ]   # A (4) + B (1) = 5 of 10
}

@test "too many parts is an error" {
  outs=(); for i in $(seq 11); do outs+=("${D}/x.${i}"); done
  run "${SPLIT}" "${D}/wav.scp" "${outs[@]}"
  [ "$status" -ne 0 ]
  [[ "$output" == *"only 10 line(s)"* ]]
}

@test "more parts than speakers is an error with --utt2spk" {
  run "${SPLIT}" --utt2spk="${D}/utt2spk" "${D}/wav.scp" "${D}/y.1" "${D}/y.2" "${D}/y.3" \
    "${D}/y.4" "${D}/y.5"
  [ "$status" -ne 0 ]
  [[ "$output" == *"only 4 speaker(s)"* ]]
}

@test "a key missing from utt2spk is an error" {
  echo "utt99 /audio/utt99.wav" >> "${D}/wav.scp"
  run "${SPLIT}" --utt2spk="${D}/utt2spk" "${D}/wav.scp" "${D}/z.1" "${D}/z.2"
  [ "$status" -ne 0 ]
  [[ "$output" == *"'utt99'"*"not in"* ]]
}

@test "speakers that are not contiguous are an error" {
  printf 'utt01 A\nutt02 B\nutt03 A\n' > "${D}/u2s"
  head -n 3 "${D}/wav.scp" > "${D}/three.scp"
  run "${SPLIT}" --utt2spk="${D}/u2s" "${D}/three.scp" "${D}/n.1" "${D}/n.2"
  [ "$status" -ne 0 ]
  [[ "$output" == *"speaker 'A' reappears"* ]]
}

@test "-j N K writes part K (0-based) to stdout, equal to the file form" {
  "${SPLIT}" "${D}/wav.scp" "${D}/o.1" "${D}/o.2" "${D}/o.3"
  for k in 0 1 2; do
    run "${SPLIT}" -j 3 "${k}" "${D}/wav.scp"
    [ "$status" -eq 0 ]
    [ "$output" = "$(cat "${D}/o.$((k + 1))")" ]
  done
  run "${SPLIT}" -j 3 3 "${D}/wav.scp"
  [ "$status" -ne 0 ]
}

@test "-j with --utt2spk and --one-based" {
  "${SPLIT}" --utt2spk="${D}/utt2spk" "${D}/wav.scp" "${D}/s.1" "${D}/s.2" "${D}/s.3"
  run "${SPLIT}" --utt2spk="${D}/utt2spk" -j 3 1 "${D}/wav.scp"
  [ "$output" = "$(cat "${D}/s.2")" ]
  run "${SPLIT}" --one-based --utt2spk="${D}/utt2spk" -j 3 3 "${D}/wav.scp"
  [ "$output" = "$(cat "${D}/s.3")" ]
}
