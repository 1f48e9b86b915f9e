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

const char *mtli_data_strerror(int err, char *buf, size_t size)
{
    /* XSI strerror_r (this file is built without _GNU_SOURCE) */
    if (strerror_r(err, buf, size) != 0)
        snprintf(buf, size, "error %d", err);
    return buf;
}

mtl_status mtli_data_open(int *fd, size_t *size, const char *path, const char *fn)
{
    char eb[128];
    *fd = -1;
    *size = 0;
    int f;
    do {
        f = open(path, O_RDONLY | O_CLOEXEC);
    } while (f < 0 && errno == EINTR);
    if (f < 0) {
        int e = errno;
        return mtli_error(MTL_ERR_IO, "%s: cannot open '%s': %s", fn, path,
                          mtli_data_strerror(e, eb, sizeof eb));
    }
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return mtli_error(MTL_ERR_IO, "%s: cannot stat '%s': %s", fn, path,
                          mtli_data_strerror(e, eb, sizeof eb));
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return mtli_error(MTL_ERR_IO, "%s: '%s' is not a regular file", fn, path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)(SIZE_MAX >> 1)) {
        close(f);
        return mtli_error(MTL_ERR_IO, "%s: '%s' is too large (%lld bytes)", fn, path,
                          (long long)st.st_size);
    }
    *fd = f;
    *size = (size_t)st.st_size;
    return MTL_OK;
}

mtl_status mtli_data_read(int fd, void *buf, size_t n, size_t *got, const char *path,
                          const char *fn)
{
    char eb[128];
    unsigned char *p = buf;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done;
        if (chunk > ((size_t)1 << 30))
            chunk = (size_t)1 << 30;
        ssize_t r = read(fd, p + done, chunk);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            *got = done;
            return mtli_error(MTL_ERR_IO, "%s: cannot read '%s': %s", fn, path,
                              mtli_data_strerror(e, eb, sizeof eb));
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return MTL_OK;
}

mtl_status mtli_data_read_file(char **data, size_t *size, const char *path, const char *fn)
{
    *data = NULL;
    *size = 0;
    int fd;
    size_t n;
    MTLI_TRY(mtli_data_open(&fd, &n, path, fn));
    char *buf = mtli_malloc(n + 1);
    if (!buf) {
        close(fd);
        return mtli_oom("file contents", n + 1);
    }
    size_t got;
    mtl_status st = mtli_data_read(fd, buf, n, &got, path, fn);
    close(fd);
    if (st != MTL_OK) {
        mtli_free(buf);
        return st;
    }
    if (got != n) {
        mtli_free(buf);
        return mtli_error(MTL_ERR_IO, "%s: '%s' changed while being read (%zu of %zu bytes)", fn,
                          path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return MTL_OK;
}

mtl_status mtli_data_writer_open(mtli_data_writer *w, const char *path, const char *fn)
{
    char eb[128];
    w->fd = -1;
    w->tmp = NULL;
    w->path = path;
    w->fn = fn;
    static const char suffix[] = ".tmp.XXXXXX";
    size_t len = strlen(path);
    if (len == 0)
        return mtli_error(MTL_ERR_INVALID_ARGUMENT, "%s: path is empty", fn);
    if (path[len - 1] == '/')
        return mtli_error(MTL_ERR_IO, "%s: '%s' names a directory", fn, path);
    w->tmp = mtli_malloc(len + sizeof suffix);
    if (!w->tmp)
        return mtli_oom("temporary file name", len + sizeof suffix);
    memcpy(w->tmp, path, len);
    memcpy(w->tmp + len, suffix, sizeof suffix);
    int fd = mkstemp(w->tmp);
    if (fd < 0) {
        int e = errno;
        mtli_free(w->tmp);
        w->tmp = NULL;
        return mtli_error(MTL_ERR_IO, "%s: cannot create a temporary file next to '%s': %s", fn,
                          path, mtli_data_strerror(e, eb, sizeof eb));
    }
    /* mkstemp creates 0600; data files are ordinarily readable by others */
    (void)fchmod(fd, 0644);
    w->fd = fd;
    return MTL_OK;
}

mtl_status mtli_data_writer_write(mtli_data_writer *w, const void *data, size_t n)
{
    char eb[128];
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = write(w->fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return mtli_error(MTL_ERR_IO, "%s: cannot write '%s': %s", w->fn, w->tmp,
                              mtli_data_strerror(e, eb, sizeof eb));
        }
        p += r;
        n -= (size_t)r;
    }
    return MTL_OK;
}

static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0)
            n = 1; /* "/file" */
        if (n >= sizeof dir)
            return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: the rename itself already succeeded */
        close(fd);
    }
}

mtl_status mtli_data_writer_commit(mtli_data_writer *w)
{
    char eb[128];
    int e = 0;
    const char *what = NULL;
    if (fsync(w->fd) != 0) {
        e = errno;
        what = "flush";
    }
    if (close(w->fd) != 0 && !what) {
        e = errno;
        what = "close";
    }
    w->fd = -1;
    if (!what && rename(w->tmp, w->path) != 0) {
        e = errno;
        what = "rename the temporary file to";
    }
    if (what) {
        mtl_status st = mtli_error(MTL_ERR_IO, "%s: cannot %s '%s': %s", w->fn, what, w->path,
                                   mtli_data_strerror(e, eb, sizeof eb));
        mtli_data_writer_abort(w);
        return st;
    }
    sync_parent_dir(w->path);
    mtli_free(w->tmp);
    w->tmp = NULL;
    return MTL_OK;
}

void mtli_data_writer_abort(mtli_data_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->tmp) {
        unlink(w->tmp);
        mtli_free(w->tmp);
        w->tmp = NULL;
    }
}

uint32_t mtli_data_crc32(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
