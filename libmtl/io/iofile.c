/* CRC-32, whole-file reads and atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "data/fileio.h"
#include "io/iofile.h"

/* One CRC-32 for every file format of the library: the data formats' implementation. */
uint32_t mtli_crc32(uint32_t crc, const void *data, size_t n)
{
    return mtli_data_crc32(crc, data, n);
}

static const char *errtext(int e, char *buf, size_t n)
{
    if (strerror_r(e, buf, n) != 0)
        snprintf(buf, n, "error %d", e);
    return buf;
}

mtl_status mtli_read_file(const char *path, const char *what, unsigned char **data,
                          size_t *size)
{
    char eb[128];
    *data = NULL;
    *size = 0;
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return mtli_error(MTL_ERR_IO, "%s: cannot open '%s': %s", what, path,
                          errtext(errno, eb, sizeof eb));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mtli_error(MTL_ERR_IO, "%s: cannot stat '%s': %s", what, path,
                          errtext(e, eb, sizeof eb));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mtli_error(MTL_ERR_IO, "%s: '%s' is not a regular file", what, path);
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > (uintmax_t)(SIZE_MAX / 2)) {
        close(fd);
        return mtli_error(MTL_ERR_IO, "%s: '%s' is too large to read (%jd bytes)", what, path,
                          (intmax_t)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = mtli_malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return mtli_oom("file contents", n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            mtli_free(buf);
            return mtli_error(MTL_ERR_IO, "%s: cannot read '%s': %s", what, path,
                              errtext(e, eb, sizeof eb));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        mtli_free(buf);
        return mtli_error(MTL_ERR_IO, "%s: '%s' changed size while being read", what, path);
    }
    *data = buf;
    *size = n;
    return MTL_OK;
}

/* ---- atomic writes ----------------------------------------------------------------------- */

/* The process umask without changing it (umask(2) cannot be read without setting it, which
 * would race with other threads): Linux reports it in /proc/self/status. */
static int current_umask(mode_t *out)
{
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strstr(buf, "\nUmask:");
    if (!p)
        return 0;
    p += 7;
    while (*p == ' ' || *p == '\t')
        p++;
    mode_t m = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '7' && digits < 6) {
        m = (mode_t)(m * 8 + (mode_t)(*p - '0'));
        p++;
        digits++;
    }
    if (digits == 0)
        return 0;
    *out = m & 0777;
    return 1;
}

mtl_status mtli_atomic_open(mtli_atomic *a, const char *path, const char *what)
{
    char eb[128];
    a->fd = -1;
    a->path = a->tmp_path = NULL;
    a->what = what;
    a->used = 0;
    a->err = 0;
    size_t len = strlen(path);
    if (len == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: the path is empty", what);
    if (path[len - 1] == '/')
        return mtli_error(MTL_ERR_IO, "%s: '%s' names a directory", what, path);
    a->path = mtli_strdup(path);
    a->tmp_path = mtli_malloc(len + 12);
    if (!a->path || !a->tmp_path) {
        mtli_free(a->path);
        mtli_free(a->tmp_path);
        a->path = a->tmp_path = NULL;
        return mtli_oom("file name", len + 12);
    }
    memcpy(a->tmp_path, path, len);
    memcpy(a->tmp_path + len, ".tmp-XXXXXX", 12);
    a->fd = mkstemp(a->tmp_path);
    if (a->fd < 0) {
        int e = errno;
        mtl_status st = mtli_error(MTL_ERR_IO, "%s: cannot create a temporary file next to '%s': %s",
                                   what, path, errtext(e, eb, sizeof eb));
        mtli_free(a->path);
        mtli_free(a->tmp_path);
        a->path = a->tmp_path = NULL;
        return st;
    }
    /* mkstemp creates the file 0600; give it the mode an ordinary create would (or the mode
     * of the file it replaces). */
    struct stat st;
    mode_t mode;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        mode = st.st_mode & 07777;
    else {
        mode_t um;
        mode = current_umask(&um) ? (mode_t)(0666 & ~um) : (mode_t)0600;
    }
    (void)fchmod(a->fd, mode);
    return MTL_OK;
}

static void flush_buf(mtli_atomic *a)
{
    size_t off = 0;
    while (off < a->used && a->err == 0) {
        ssize_t w = write(a->fd, a->buf + off, a->used - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            a->err = errno;
            break;
        }
        off += (size_t)w;
    }
    a->used = 0;
}

void mtli_atomic_write(mtli_atomic *a, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (a->err)
        return;
    while (n > 0) {
        size_t room = sizeof a->buf - a->used;
        size_t k = n < room ? n : room;
        memcpy(a->buf + a->used, p, k);
        a->used += k;
        p += k;
        n -= k;
        if (a->used == sizeof a->buf) {
            flush_buf(a);
            if (a->err)
                return;
        }
    }
}

void mtli_atomic_abort(mtli_atomic *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->tmp_path)
        unlink(a->tmp_path);
    mtli_free(a->tmp_path);
    mtli_free(a->path);
    a->tmp_path = a->path = NULL;
}

static int fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir)
            return 0; /* cannot name it; the rename itself succeeded */
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* some file systems cannot sync directories; that is not a failure of the write */
    if (rc != 0 && e != EINVAL && e != EBADF && e != EROFS)
        return e;
    return 0;
}

mtl_status mtli_atomic_commit(mtli_atomic *a)
{
    char eb[128];
    enum { S_WRITE, S_SYNC, S_CLOSE, S_RENAME } step = S_WRITE;
    static const char *const step_name[] = {"write", "sync", "close", "rename"};
    if (a->err == 0)
        flush_buf(a);
    if (a->err == 0) {
        step = S_SYNC;
        while (fsync(a->fd) != 0) {
            if (errno != EINTR) {
                a->err = errno;
                break;
            }
        }
    }
    if (a->err == 0) {
        step = S_CLOSE;
        if (close(a->fd) != 0 && errno != EINTR)
            a->err = errno;
        a->fd = -1;
    }
    if (a->err == 0) {
        step = S_RENAME;
        if (rename(a->tmp_path, a->path) != 0)
            a->err = errno;
    }
    if (a->err != 0) {
        mtl_status st;
        if (step == S_RENAME)
            st = mtli_error(MTL_ERR_IO, "%s: cannot replace '%s': %s", a->what, a->path,
                            errtext(a->err, eb, sizeof eb));
        else
            st = mtli_error(MTL_ERR_IO, "%s: cannot %s '%s' (the temporary file for '%s'): %s",
                            a->what, step_name[step], a->tmp_path, a->path,
                            errtext(a->err, eb, sizeof eb));
        mtli_atomic_abort(a);
        return st;
    }
    int e = fsync_dir_of(a->path);
    mtli_free(a->tmp_path);
    a->tmp_path = NULL;
    mtl_status st = MTL_OK;
    if (e != 0)
        st = mtli_error(MTL_ERR_IO, "%s: wrote '%s' but could not sync its directory: %s",
                        a->what, a->path, errtext(e, eb, sizeof eb));
    mtli_free(a->path);
    a->path = NULL;
    return st;
}
