# The closing summary of `make test` from cargo's output (tee'd to target/test.log): the
# tests of every binary added up, and each binary that failed by name, including one that
# ended without a result line (crashed, or killed), which counts as one failure.
/^ +Running / { binary = ($2 == "unittests") ? $2 " " $3 : $2; binaries[binary] = 0; order[++n] = binary }
/^ +Doc-tests / { binary = "doc-tests " $2; binaries[binary] = 0; order[++n] = binary }
/^test result:/ {
  passed += $4; failed += $6; binaries[binary] = 1
  if ($6 > 0) bad[binary] = $6 " failed"
}
END {
  if (n == 0) { print "FAILED: no test binary ran (a build error? see target/test.log)"; failed++ }
  for (i = 1; i <= n; i++) {
    b = order[i]
    if (!binaries[b]) { bad[b] = "no result: it crashed or was killed"; failed++ }
    if (b in bad) printf "FAILED %s: %s\n", b, bad[b]
  }
  printf "summary: %d passed, %d failed\n", passed, failed
}
