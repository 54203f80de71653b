"""Process supervision shared by `kintsugi up`, the tests and the bench: start the Temporal dev server and
Kintsugi's processes, wait until they serve, stop them by their own pids."""
