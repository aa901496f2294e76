/* test.h -- a tiny assertion harness for the C unit tests (run by ctest).
 *
 * Each test file defines TEST(name) functions and lists them in main() with
 * RUN(name). A failed CHECK prints file:line and the expression and marks the
 * test failed; the process exits 1 if any test failed. The last line printed
 * is "N passed, M failed". */
#ifndef AIGW_TEST_H
#define AIGW_TEST_H

#include <stdio.h>
#include <string.h>

static int test__failed_checks;
static int test__passed, test__failed;

#define CHECK(expr)                                                            \
  do {                                                                         \
    if (!(expr)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
      test__failed_checks++;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
  do {                                                                                          \
    long long test__a = (long long)(a), test__b = (long long)(b);                               \
    if (test__a != test__b) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, \
              #b, test__a, test__b);                                                            \
      test__failed_checks++;                                                                    \
    }                                                                                           \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                                      \
  do {                                                                                          \
    const char *test__a = (a), *test__b = (b);                                                  \
    if (test__a == NULL || test__b == NULL || strcmp(test__a, test__b) != 0) {                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__, __LINE__, \
              #a, #b, test__a ? test__a : "(null)", test__b ? test__b : "(null)");              \
      test__failed_checks++;                                                                    \
    }                                                                                           \
  } while (0)

#define TEST(name) static void test_##name(void)

#define RUN(name)                              \
  do {                                         \
    int test__before = test__failed_checks;    \
    test_##name();                             \
    if (test__failed_checks == test__before) { \
      test__passed++;                          \
      printf("ok - %s\n", #name);              \
    } else {                                   \
      test__failed++;                          \
      printf("not ok - %s\n", #name);          \
    }                                          \
  } while (0)

#define TEST_SUMMARY() \
  (printf("%d passed, %d failed\n", test__passed, test__failed), test__failed ? 1 : 0)

#endif
