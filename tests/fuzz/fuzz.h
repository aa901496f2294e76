/* fuzz.h -- what every fuzz target shares: the sanitizers' defaults and
 * the way a finding already reported is let go.
 *
 * A UBSan report stops the run (halt_on_error; the build leaves UBSan
 * recoverable so that tests/fuzz/ubsan.supp can name the reports already
 * known, which scripts/fuzz.sh passes unless AIGW_FUZZ_STRICT=1). Include
 * it in exactly one file of each target. */
#ifndef AIGW_FUZZ_H
#define AIGW_FUZZ_H

#include <stdlib.h>
#include <string.h>

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

/* AIGW_FUZZ_STRICT=1: findings already reported count again (to check a
 * fix; then take the finding off the target's known list). */
static inline int fuzz_strict(void) {
  const char *s = getenv("AIGW_FUZZ_STRICT");
  return s && strcmp(s, "1") == 0;
}

#endif
