/* fuzz.h -- what every fuzz target shares: the sanitizers' defaults and
 * the way a finding already reported is let go.
 *
 * A UBSan report stops the run (halt_on_error; the build leaves UBSan
 * recoverable so that tests/fuzz/ubsan.supp can name the reports already
 * known). Include it in exactly one file of each target. */
#ifndef AIGW_FUZZ_H
#define AIGW_FUZZ_H

#include <stdlib.h>
#include <string.h>

/* AIGW_FUZZ_STRICT=1: findings already reported count again (to check a
 * fix; then take the finding off the target's known list). */
static inline int fuzz_strict(void) {
  const char *s = getenv("AIGW_FUZZ_STRICT");
  return s && strcmp(s, "1") == 0;
}

/* Adds a libFuzzer flag (e.g. "-detect_leaks=0") unless the command line
 * sets it: call from LLVMFuzzerInitialize, which runs before libFuzzer reads
 * its flags, so that a target run by hand on a file behaves as under
 * scripts/fuzz.sh. */
static inline void fuzz_default_flag(int *argc, char ***argv, const char *flag) {
  const char *eq = strchr(flag, '=');
  size_t klen = eq ? (size_t)(eq - flag) + 1 : strlen(flag);
  for (int i = 1; i < *argc; i++)
    if (strncmp((*argv)[i], flag, klen) == 0) return;
  char **nv = malloc(((size_t)*argc + 2) * sizeof *nv); /* lives as long as the process */
  nv[0] = (*argv)[0];
  nv[1] = (char *)flag;
  for (int i = 1; i < *argc; i++) nv[i + 1] = (*argv)[i];
  nv[*argc + 1] = NULL;
  *argv = nv;
  (*argc)++;
}

/* UBSan's defaults (UBSAN_OPTIONS adds to them): fatal reports, with the
 * known ones suppressed unless strict. Called while the sanitizers start:
 * no intercepted libc call (printf, strcpy) may be made here. */
#define FUZZ_EARLY __attribute__((no_sanitize("address", "undefined", "coverage")))
FUZZ_EARLY const char *__ubsan_default_options(void);
FUZZ_EARLY const char *__ubsan_default_options(void) {
  static char opts[4200];
  static const char head[] = "halt_on_error=1:print_stacktrace=1",
                    supp[] = ":suppressions=", tail[] = "/tests/fuzz/ubsan.supp";
  const char *prefix = getenv("AIGW_PREFIX");
  if (prefix == NULL || *prefix == '\0') prefix = AIGW_DEFAULT_PREFIX;
  const char *s = getenv("AIGW_FUZZ_STRICT");
  if (s && s[0] == '1' && s[1] == '\0') return head;
  const char *parts[4] = {head, supp, prefix, tail};
  size_t o = 0;
  for (int i = 0; i < 4; i++)
    for (const char *c = parts[i]; *c && o < sizeof opts - 1; c++) opts[o++] = *c;
  opts[o] = '\0';
  return opts;
}

#endif
