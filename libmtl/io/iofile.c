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
#include "io/iofile.h"

static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

uint32_t mtli_crc32(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return ~c;
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
