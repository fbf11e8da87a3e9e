/* Fault injection for the store's I/O tests: fails the Nth write to files under a folder.
 *
 * Loaded with LD_PRELOAD into a test process (tests/fault_writer.py), it wraps libc's write calls:
 * write, pwrite, writev, ftruncate, fallocate, fsync, fdatasync, rename and open with O_CREAT. Each
 * call on a file under the armed folder counts as one write; the Nth fails with the armed errno
 * (ENOSPC: a full disk; EIO: a failing device), and with `persistent` every later one fails too,
 * until the test disarms it ("space returns"). SQLite, FAISS (through Python's file objects) and
 * Python itself all write through these calls, so the store sees real errors from the system calls
 * it makes, as on a full disk. The test drives it through ctypes: failwrite_arm / failwrite_disarm /
 * failwrite_count.
 *
 * A process the test cannot call into (a server) is driven by two environment variables instead:
 * while the file FAILWRITE_CONTROL exists, every write under the folder FAILWRITE_PREFIX fails with
 * ENOSPC (the disk is full); once the test removes it, space has returned.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static char prefix[4096];
static size_t prefix_length = 0;
static long seen = 0;      /* writes under the folder since arming */
static long fail_at = 0;   /* 0: count only */
static int persistent = 0;
static int fail_errno = ENOSPC;

void failwrite_arm(const char *folder, long nth, int keep_failing, int error_number) {
    snprintf(prefix, sizeof prefix, "%s", folder);
    prefix_length = strlen(prefix);
    seen = 0;
    fail_at = nth;
    persistent = keep_failing;
    fail_errno = error_number;
}

long failwrite_disarm(void) {
    prefix_length = 0;
    fail_at = 0;
    return seen;
}

long failwrite_count(void) { return seen; }

/* The disk is full by the environment's say (see the header): the folder, or NULL. */
static const char *full_by_control_file(void) {
    static const char *control = NULL, *folder = NULL;
    static int read_environment = 0;
    if (!read_environment) {
        control = getenv("FAILWRITE_CONTROL");
        folder = getenv("FAILWRITE_PREFIX");
        read_environment = 1;
    }
    if (control == NULL || folder == NULL || access(control, F_OK) != 0) return NULL;
    return folder;
}

static int starts_with(const char *path, const char *folder) {
    return path != NULL && strncmp(path, folder, strlen(folder)) == 0;
}

static int path_under(const char *path) {
    if (prefix_length == 0) {
        const char *folder = full_by_control_file();
        return folder != NULL && starts_with(path, folder);
    }
    return starts_with(path, prefix);
}

static int fd_under(int fd) {
    char link[64], path[4096];
    if (prefix_length == 0 && full_by_control_file() == NULL) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return path_under(path);
}

/* 1 when this write (already known to be under the folder) must fail. */
static int fails(void) {
    if (prefix_length == 0) {  /* full by the control file: every write fails while it exists */
        errno = ENOSPC;
        return 1;
    }
    seen++;
    if (fail_at <= 0) return 0;
    if (seen == fail_at || (persistent && seen > fail_at)) {
        errno = fail_errno;
        return 1;
    }
    return 0;
}

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buffer, size_t count) {
    REAL(write);
    if (fd_under(fd) && fails()) return -1;
    return real_write(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    REAL(pwrite);
    if (fd_under(fd) && fails()) return -1;
    return real_pwrite(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off_t offset) {
    REAL(pwrite64);
    if (fd_under(fd) && fails()) return -1;
    return real_pwrite64(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *vector, int count) {
    REAL(writev);
    if (fd_under(fd) && fails()) return -1;
    return real_writev(fd, vector, count);
}

int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    if (fd_under(fd) && fails()) return -1;
    return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off_t length) {
    REAL(ftruncate64);
    if (fd_under(fd) && fails()) return -1;
    return real_ftruncate64(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t length) {
    REAL(fallocate);
    if (fd_under(fd) && fails()) return -1;
    return real_fallocate(fd, mode, offset, length);
}

int posix_fallocate(int fd, off_t offset, off_t length) {
    REAL(posix_fallocate);
    if (fd_under(fd) && fails()) return errno;
    return real_posix_fallocate(fd, offset, length);
}

int fsync(int fd) {
    REAL(fsync);
    if (fd_under(fd) && fails()) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    if (fd_under(fd) && fails()) return -1;
    return real_fdatasync(fd);
}

int rename(const char *old_path, const char *new_path) {
    REAL(rename);
    if (path_under(new_path) && fails()) return -1;
    return real_rename(old_path, new_path);
}

int renameat(int old_dir, const char *old_path, int new_dir, const char *new_path) {
    REAL(renameat);
    if (path_under(new_path) && fails()) return -1;
    return real_renameat(old_dir, old_path, new_dir, new_path);
}

static mode_t mode_of(int flags, va_list arguments) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(arguments, int) : 0;
}

int open(const char *path, int flags, ...) {
    REAL(open);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = mode_of(flags, arguments);
    va_end(arguments);
    if ((flags & O_CREAT) && path_under(path) && fails()) return -1;
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    REAL(open64);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = mode_of(flags, arguments);
    va_end(arguments);
    if ((flags & O_CREAT) && path_under(path) && fails()) return -1;
    return real_open64(path, flags, mode);
}

int openat(int directory, const char *path, int flags, ...) {
    REAL(openat);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = mode_of(flags, arguments);
    va_end(arguments);
    if ((flags & O_CREAT) && path_under(path) && fails()) return -1;
    return real_openat(directory, path, flags, mode);
}

int openat64(int directory, const char *path, int flags, ...) {
    REAL(openat64);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = mode_of(flags, arguments);
    va_end(arguments);
    if ((flags & O_CREAT) && path_under(path) && fails()) return -1;
    return real_openat64(directory, path, flags, mode);
}
