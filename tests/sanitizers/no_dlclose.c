/* Preloaded into the sanitizer build's tests (tests/run.sh): dlclose does nothing,
 * so the Open MPI plugins (mca_*.so) that MPI_Finalize unloads stay mapped
 * and LeakSanitizer, which reports at exit, can name them; lsan.supp then
 * suppresses their leaks by module. Without it their stacks show only
 * "<unknown module>", which no suppression can match. Built without
 * sanitizers: compilers and cmake that the tests start load it too. */
int dlclose(void* handle) {
  (void)handle;
  return 0;
}
