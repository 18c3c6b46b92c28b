/* _fdscope_speedups: optional C versions of fdscope's per-fd loops, with small data-only
 * contracts (fdscope/speedups.py lists them with their Python twins):
 *   readlinkat_many, read_many  batch reads below a directory fd, the GIL released throughout
 *   kcmp_many                   batch kcmp(2) file comparisons, the GIL released throughout
 *   epoll_rows, net_rows        text -> rows parsers for epoll fdinfo and /proc/PID/net tables
 *   link_kinds                  /proc/PID/fd link texts -> a kind byte and inode each
 *   rows_json                   NamedTuple rows -> JSON objects
 * Every function has a pure-Python twin that stays the reference; the tests compare both on
 * live processes and on hypothesis-generated input. A parser returns None where its input is
 * not in the exact form it knows, and the Python twin then decides. Nothing here opens /proc
 * paths by name: the batch reads work on a directory fd that fdscope.proc.Proc opened, and
 * their errors go back to Proc as errno numbers.
 */
#define PY_SSIZE_T_CLEAN
/* Raise with every change of a function's arguments or results (fdscope/speedups.py: API). */
#define FDSCOPE_SPEEDUPS_API 11
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Append `item` to `list`, dropping our reference: -1 (exception set) when item is NULL or
 * the append fails. */
static int
append_steal(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int r = PyList_Append(list, item);
    Py_DECREF(item);
    return r;
}

/* ---------------------------------------------------------------- readlinkat_many, read_many */

/* One batch of syscalls over the names of a directory: the names as C strings, and per name
 * the length of its result in `arena` or -errno. */
typedef struct {
    Py_ssize_t n;
    const char **names;
    Py_ssize_t *len;
    char *arena;
    size_t cap, used;
} Batch;

static void
batch_free(Batch *b)
{
    PyMem_RawFree(b->names);
    PyMem_RawFree(b->len);
    PyMem_RawFree(b->arena);
}

/* Room for n names and `cap` bytes of results; -1 when out of memory (no exception set: it
 * may run without the GIL). */
static int
batch_alloc(Batch *b, Py_ssize_t n, size_t cap)
{
    b->n = n;
    b->names = PyMem_RawMalloc(sizeof(char *) * (n ? n : 1));
    b->len = PyMem_RawMalloc(sizeof(Py_ssize_t) * (n ? n : 1));
    b->cap = cap;
    b->used = 0;
    b->arena = PyMem_RawMalloc(cap);
    return b->names == NULL || b->len == NULL || b->arena == NULL ? -1 : 0;
}

/* 0, or -1 with an exception set. `names` must be a list of str. */
static int
batch_init(Batch *b, PyObject *names, size_t cap, const char *who)
{
    if (batch_alloc(b, PyList_GET_SIZE(names), cap) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_Format(PyExc_TypeError, "%s: names must be str", who);
            return -1;
        }
        b->names[i] = PyUnicode_AsUTF8(name);
        if (b->names[i] == NULL)
            return -1;
    }
    return 0;
}

/* Room for `more` bytes in the arena; -1 when out of memory (called without the GIL). */
static int
batch_room(Batch *b, size_t more)
{
    if (b->cap - b->used >= more)
        return 0;
    size_t cap = b->cap * 2 + more;
    char *grown = PyMem_RawRealloc(b->arena, cap);
    if (grown == NULL)
        return -1;
    b->arena = grown;
    b->cap = cap;
    return 0;
}

/* (texts, errors): per name its text, or None where the call failed, and the failures as
 * (index, errno). fs_decode: as os.readlink decodes (file system encoding, surrogateescape),
 * else as fdscope.proc.Proc.read_text decodes (UTF-8, surrogateescape). */
static PyObject *
batch_results(const Batch *b, int fs_decode)
{
    PyObject *texts = PyList_New(b->n), *errors = PyList_New(0);
    if (texts == NULL || errors == NULL)
        goto fail;
    size_t at = 0;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *item;
        if (b->len[i] < 0) {
            if (append_steal(errors, Py_BuildValue("(nn)", i, -b->len[i])) < 0)
                goto fail;
            Py_INCREF(Py_None);
            item = Py_None;
        } else {
            item = fs_decode ? PyUnicode_DecodeFSDefaultAndSize(b->arena + at, b->len[i])
                             : PyUnicode_DecodeUTF8(b->arena + at, b->len[i], "surrogateescape");
            at += (size_t)b->len[i];
            if (item == NULL)
                goto fail;
        }
        PyList_SET_ITEM(texts, i, item);
    }
    return Py_BuildValue("(NN)", texts, errors);
fail:
    Py_XDECREF(texts);
    Py_XDECREF(errors);
    return NULL;
}

/* One name of a batch: its result appended to the arena, len[i] set; -1 when out of memory.
 * Called without the GIL. */
typedef int (*BatchStep)(Batch *b, int dir_fd, Py_ssize_t i);

static int
step_readlink(Batch *b, int dir_fd, Py_ssize_t i)
{
    if (batch_room(b, 4096) < 0)
        return -1;
    ssize_t r = readlinkat(dir_fd, b->names[i], b->arena + b->used, 4096);
    if (r < 0) {
        b->len[i] = -(Py_ssize_t)errno;
    } else {
        b->len[i] = r;
        b->used += (size_t)r;
    }
    return 0;
}

static int
step_read(Batch *b, int dir_fd, Py_ssize_t i)
{
    int fd = openat(dir_fd, b->names[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        b->len[i] = -(Py_ssize_t)errno;
        return 0;
    }
    size_t start = b->used;
    int rc = 0;
    for (;;) {
        if (batch_room(b, 4096) < 0) {
            rc = -1;
            break;
        }
        ssize_t r = read(fd, b->arena + b->used, b->cap - b->used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            b->len[i] = -(Py_ssize_t)errno;
            b->used = start;
            break;
        }
        if (r == 0) {
            b->len[i] = (Py_ssize_t)(b->used - start);
            break;
        }
        b->used += (size_t)r;
    }
    close(fd);
    return rc;
}

/* (dir_fd, names) -> `step` for each name with the GIL released -> batch_results. */
static PyObject *
run_batch(PyObject *args, const char *format, const char *who, size_t cap_per_name,
          BatchStep step, int fs_decode)
{
    int dir_fd;
    PyObject *names, *out = NULL;
    if (!PyArg_ParseTuple(args, format, &dir_fd, &PyList_Type, &names))
        return NULL;
    Batch b = {0, NULL, NULL, NULL, 0, 0};
    size_t cap = (size_t)(PyList_GET_SIZE(names) + 1) * cap_per_name;
    if (batch_init(&b, names, cap > (1 << 16) ? cap : (1 << 16), who) == 0) {
        int nomem = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < b.n && !nomem; i++)
            nomem = step(&b, dir_fd, i) < 0;
        Py_END_ALLOW_THREADS
        out = nomem ? PyErr_NoMemory() : batch_results(&b, fs_decode);
    }
    batch_free(&b);
    return out;
}

/* readlinkat(dir_fd, name) for each name, the GIL released around the syscalls.
 * Returns (texts, errors) as batch_results says. PATH_MAX bytes per link would be 64 MB at
 * 16,000 fds: links go into one arena, first sized at ~48 bytes a name, grown as needed. */
static PyObject *
readlinkat_many(PyObject *self, PyObject *args)
{
    return run_batch(args, "iO!:readlinkat_many", "readlinkat_many", 48, step_readlink, 1);
}

/* The whole text of each file `name` below dir_fd (openat, read to EOF, close), the GIL
 * released around the syscalls. Returns (texts, errors) as batch_results says. */
static PyObject *
read_many(PyObject *self, PyObject *args)
{
    return run_batch(args, "iO!:read_many", "read_many", 0, step_read, 0);
}

/* ---------------------------------------------------------------- kcmp_many */

/* include/uapi/linux/kcmp.h */
enum { KCMP_FILE_ = 0, KCMP_EPOLL_TFD_ = 7 };
struct kcmp_epoll_slot_ {
    uint32_t efd, tfd, toff;
};

/* kcmp_many(pid, items) -> [int]: kcmp(2) between two fds of process pid, for each item, with
 * the GIL released throughout. An item (fd1, fd2) compares the open files of both fds
 * (KCMP_FILE); an item (fd, epfd, tfd, toff) compares the open file of fd with the file
 * registered in epoll fd epfd as tfd, the toff-th such registration (KCMP_EPOLL_TFD, Linux
 * 4.13). Each result is kcmp's: 0 equal, 1 or 2 ordered, 3 not equal; or -errno. */
static PyObject *
kcmp_many(PyObject *self, PyObject *args)
{
    long pid;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "lO!:kcmp_many", &pid, &PyList_Type, &items))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    long (*in)[4] = PyMem_RawMalloc(sizeof *in * (size_t)(n ? n : 1));
    long *out = PyMem_RawMalloc(sizeof *out * (size_t)(n ? n : 1));
    char *epoll = PyMem_RawMalloc((size_t)(n ? n : 1));
    PyObject *res = NULL;
    if (in == NULL || out == NULL || epoll == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        Py_ssize_t k = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 0;
        if (k != 2 && k != 4) {
            PyErr_SetString(PyExc_TypeError, "kcmp_many: items are (fd1, fd2) or "
                                             "(fd, epfd, tfd, toff)");
            goto done;
        }
        epoll[i] = k == 4;
        for (Py_ssize_t j = 0; j < k; j++) {
            in[i][j] = PyLong_AsLong(PyTuple_GET_ITEM(item, j));
            if (in[i][j] == -1 && PyErr_Occurred())
                goto done;
            if (in[i][j] < 0 || in[i][j] > 0x7fffffffL) {
                PyErr_SetString(PyExc_ValueError, "kcmp_many: fd out of range");
                goto done;
            }
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
#ifdef SYS_kcmp
        long r;
        if (epoll[i]) {
            struct kcmp_epoll_slot_ slot = {(uint32_t)in[i][1], (uint32_t)in[i][2],
                                            (uint32_t)in[i][3]};
            r = syscall(SYS_kcmp, (pid_t)pid, (pid_t)pid, KCMP_EPOLL_TFD_,
                        (unsigned long)in[i][0], (unsigned long)&slot);
        } else {
            r = syscall(SYS_kcmp, (pid_t)pid, (pid_t)pid, KCMP_FILE_, (unsigned long)in[i][0],
                        (unsigned long)in[i][1]);
        }
        out[i] = r < 0 ? -(long)errno : r;
#else
        out[i] = -ENOSYS;
#endif
    }
    Py_END_ALLOW_THREADS
    res = PyList_New(n);
    for (Py_ssize_t i = 0; res != NULL && i < n; i++) {
        PyObject *v = PyLong_FromLong(out[i]);
        if (v == NULL) {
            Py_CLEAR(res);
            break;
        }
        PyList_SET_ITEM(res, i, v);
    }
done:
    PyMem_RawFree(in);
    PyMem_RawFree(out);
    PyMem_RawFree(epoll);
    return res;
}

/* ---------------------------------------------------------------- epoll_rows */

/* Digits in `base` at *p (hex_case: which letters a hex digit may use), at most 64 bits wide:
 * 1 and *p moved past them, or 0 (no digit, or wider: the Python parsers take any width). */
enum { HEX_LOWER = 1, HEX_UPPER = 2 };

/* Digit values: 0-9, 10-15 for a-f, 16 + (10-15) for A-F, 0xff for anything else. */
static unsigned char digit_of[256];

static void
digits_init(void)
{
    memset(digit_of, 0xff, sizeof digit_of);
    for (int c = '0'; c <= '9'; c++)
        digit_of[c] = (unsigned char)(c - '0');
    for (int c = 'a'; c <= 'f'; c++) {
        digit_of[c] = (unsigned char)(c - 'a' + 10);
        digit_of[c - 'a' + 'A'] = (unsigned char)(16 + c - 'a' + 10);
    }
}

static int
take_digits(const char **p, const char *end, unsigned base, int hex_case,
            unsigned long long *out)
{
    const char *s = *p;
    unsigned long long v = 0;
    int digits = 0;
    for (; s < end; s++, digits++) {
        unsigned d = digit_of[(unsigned char)*s];
        if (d >= 16) { /* upper case, or not a digit */
            if (d == 0xff || !(hex_case & HEX_UPPER))
                break;
            d -= 16;
        } else if (d >= 10 && !(hex_case & HEX_LOWER)) {
            break;
        }
        if (d >= base)
            break;
        if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
            return 0;
    }
    if (digits == 0)
        return 0;
    *p = s;
    *out = v;
    return 1;
}

/* Decimal, octal, or lower-case hex (as the kernel's %d, %o, %x print). */
static int
take_number(const char **p, const char *end, unsigned base, unsigned long long *out)
{
    return take_digits(p, end, base, HEX_LOWER, out);
}

static int
take_literal(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return 0;
    *p += n;
    return 1;
}

static void
skip_blanks(const char **p, const char *end)
{
    while (*p < end && **p == ' ')
        (*p)++;
}

static int
cmp_key(const void *a, const void *b)
{
    const long long *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* rows (tuples whose first item is a small int), sorted by it and, among equals, in their
 * order (a stable sort); steals rows. */
static PyObject *
sort_by_tfd(PyObject *rows)
{
    Py_ssize_t n = PyList_GET_SIZE(rows);
    long long (*keys)[2] = PyMem_Malloc(sizeof *keys * (size_t)(n ? n : 1));
    if (keys == NULL) {
        Py_DECREF(rows);
        return PyErr_NoMemory();
    }
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        keys[i][0] = PyLong_AsLongLong(PyTuple_GET_ITEM(PyList_GET_ITEM(rows, i), 0));
        keys[i][1] = i;
        sorted = sorted && (i == 0 || keys[i - 1][0] <= keys[i][0]);
    }
    PyObject *out = rows;
    if (!sorted) {
        qsort(keys, (size_t)n, sizeof *keys, cmp_key);
        out = PyList_New(n);
        for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
            PyObject *row = PyList_GET_ITEM(rows, keys[i][1]);
            Py_INCREF(row);
            PyList_SET_ITEM(out, i, row);
        }
        Py_DECREF(rows);
    }
    PyMem_Free(keys);
    return out;
}

/* The registrations in the text of an epoll fd's /proc/PID/fdinfo, in the current kernel form
 * (fs/eventpoll.c ep_show_fdinfo, Linux 3.19+):
 *   "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"
 * after the "pos:\t%lli\nflags:\t0%o\n" head of fs/proc/fd.c seq_show. Returns
 * [(tfd, mask, data, ino, sdev as os.stat's st_dev)] sorted by tfd (stably: the kernel lists
 * them by file pointer, and a closed and a new registration may share a tfd), or None when
 * any line differs from that form (other kernels, damage): fdscope.inspect._epoll_fast and
 * parse_fdinfo then decide. */
static PyObject *
epoll_rows(PyObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text) || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const char *p = (const char *)PyUnicode_DATA(text);
    const char *end = p + PyUnicode_GET_LENGTH(text);
    unsigned long long v;
    if (!take_literal(&p, end, "pos:\t") || !take_number(&p, end, 10, &v) ||
        !take_literal(&p, end, "\nflags:\t") || !take_number(&p, end, 8, &v) || p >= end ||
        *p != '\n')
        Py_RETURN_NONE;
    const char *base = (const char *)PyUnicode_DATA(text);
    PyObject *rows = PyList_New(0);
    if (rows == NULL)
        return NULL;
    const char *line = base;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        const char *q = line;
        if (take_literal(&q, eol, "tfd:")) {
            unsigned long long tfd, mask, data, ino, sdev, pos;
            skip_blanks(&q, eol);
            if (!take_number(&q, eol, 10, &tfd) || tfd > INT_MAX ||
                !take_literal(&q, eol, " events:"))
                goto none;
            skip_blanks(&q, eol);
            if (!take_number(&q, eol, 16, &mask) || !take_literal(&q, eol, " data:"))
                goto none;
            skip_blanks(&q, eol);
            if (!take_number(&q, eol, 16, &data) || q >= eol || *q != ' ')
                goto none;
            skip_blanks(&q, eol);
            if (!take_literal(&q, eol, "pos:"))
                goto none;
            take_literal(&q, eol, "-");
            if (!take_number(&q, eol, 10, &pos) || !take_literal(&q, eol, " ino:") ||
                !take_number(&q, eol, 16, &ino) || !take_literal(&q, eol, " sdev:") ||
                !take_number(&q, eol, 16, &sdev) || q != eol || sdev > 0xffffffffULL)
                goto none;
            /* include/linux/kdev_t.h: MAJOR(dev) = dev >> 20, MINOR(dev) = dev & 0xfffff;
             * makedev() gives the encoding st_dev uses (as os.makedev does). */
            unsigned long long dev = makedev((unsigned)(sdev >> 20), (unsigned)(sdev & 0xfffff));
            PyObject *row = PyTuple_New(5);
            if (row != NULL) {
                PyTuple_SET_ITEM(row, 0, PyLong_FromLong((long)tfd));
                PyTuple_SET_ITEM(row, 1, PyLong_FromUnsignedLongLong(mask));
                PyTuple_SET_ITEM(row, 2, PyLong_FromUnsignedLongLong(data));
                PyTuple_SET_ITEM(row, 3, PyLong_FromUnsignedLongLong(ino));
                PyTuple_SET_ITEM(row, 4, PyLong_FromUnsignedLongLong(dev));
                for (int f = 0; f < 5; f++) {
                    if (PyTuple_GET_ITEM(row, f) == NULL) {
                        Py_CLEAR(row);
                        break;
                    }
                }
            }
            if (append_steal(rows, row) < 0) {
                Py_DECREF(rows);
                return NULL;
            }
        } else {
            /* "tfd:" anywhere else is a line this fast path does not understand. */
            const char *hit = line;
            while ((hit = memchr(hit, 't', (size_t)(eol - hit))) != NULL) {
                if (eol - hit >= 4 && memcmp(hit, "tfd:", 4) == 0)
                    goto none;
                hit++;
            }
        }
        line = eol + 1;
    }
    return sort_by_tfd(rows);
none:
    Py_DECREF(rows);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- net tables */

/* Is `ino` wanted: `inodes` is a set of ints, or None for every row. -1 on error. */
static int
wanted(PyObject *inodes, unsigned long long ino)
{
    if (inodes == Py_None)
        return 1;
    PyObject *key = PyLong_FromUnsignedLongLong(ino);
    if (key == NULL)
        return -1;
    int r = PySet_Contains(inodes, key);
    Py_DECREF(key);
    return r;
}

/* Hex as %X prints it (and, with lower_ok, as %x or %pK do). */
static int
take_hex_upper(const char **p, const char *end, int lower_ok, unsigned long long *out)
{
    return take_digits(p, end, 16, HEX_UPPER | (lower_ok ? HEX_LOWER : 0), out);
}

static PyObject *str_unix, *str_listen, *unix_states[5], *str_unconn, *tcp_states[14];

/* Append the row (inode, proto, state, local, remote, recv_q, send_q) to `rows`, stealing the
 * five objects given: 0, or -1 with an exception set (the objects then released). */
static int
add_row(PyObject *rows, unsigned long long ino, PyObject *proto, PyObject *state,
        PyObject *local, PyObject *remote, PyObject *recv_q, PyObject *send_q)
{
    PyObject *row = NULL, *inode = PyLong_FromUnsignedLongLong(ino);
    if (inode != NULL && state != NULL && local != NULL && remote != NULL && recv_q != NULL &&
        send_q != NULL)
        row = PyTuple_Pack(7, inode, proto, state, local, remote, recv_q, send_q);
    Py_XDECREF(inode);
    Py_XDECREF(state);
    Py_XDECREF(local);
    Py_XDECREF(remote);
    Py_XDECREF(recv_q);
    Py_XDECREF(send_q);
    return append_steal(rows, row);
}

/* The first row of a table whose header line starts with `head`, or NULL for text that does
 * not start so. */
static const char *
after_header(const char *p, const char *end, const char *head)
{
    size_t n = strlen(head);
    if ((size_t)(end - p) < n || memcmp(p, head, n) != 0)
        return NULL;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    return eol == NULL ? NULL : eol + 1;
}

/* Rows of /proc/PID/net/unix (net/unix/af_unix.c unix_seq_show:
 * "%pK: %08X %08X %08X %04X %02X %5lu" then " PATH" when bound) for the inodes in `inodes`
 * (None: every row), appended to `rows` as (inode, "unix", state, path | None, None, None,
 * None). 1, 0 when a line is not in that form (a path holding a newline, an unnamed state:
 * the Python twin decides), -1 on error. */
static int
unix_parse(PyObject *rows, PyObject *text, PyObject *inodes, const char *p, const char *end)
{
    const char *line = after_header(p, end, "Num");
    if (line == NULL)
        return 0;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            return 0; /* the kernel ends every row with a newline */
        const char *q = line;
        unsigned long long v, flags, st, ino;
        if (!take_hex_upper(&q, eol, 1, &v) || !take_literal(&q, eol, ": ") ||
            !take_hex_upper(&q, eol, 0, &v) || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 0, &v) || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 0, &flags) || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 0, &v) || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 0, &st) || !take_literal(&q, eol, " "))
            return 0;
        skip_blanks(&q, eol);
        if (!take_number(&q, eol, 10, &ino) || (q < eol && *q != ' '))
            return 0;
        int want = wanted(inodes, ino);
        if (want < 0)
            return -1;
        if (want) {
            PyObject *state;
            if (flags & (1ULL << 16)) /* include/linux/net.h __SO_ACCEPTCON */
                state = str_listen;
            else if (st < 5)
                state = unix_states[st];
            else
                return 0;
            Py_INCREF(state);
            PyObject *path = q < eol && eol - q > 1 ?
                PyUnicode_Substring(text, (q + 1) - p, eol - p) : Py_NewRef(Py_None);
            if (add_row(rows, ino, str_unix, state, path, Py_NewRef(Py_None),
                        Py_NewRef(Py_None), Py_NewRef(Py_None)) < 0)
                return -1;
        }
        line = eol + 1;
    }
    return 1;
}

static int inet_parse(PyObject *rows, PyObject *proto, PyObject *inodes, const char *p,
                      const char *end);

/* net_rows(table, text, inodes) -> [(inode, proto, state, local, remote, recv_q, send_q)]
 * | None: the rows of /proc/PID/net/TABLE (unix, tcp, tcp6, udp, udp6, raw, raw6) for the
 * inodes in the set `inodes` (None: every row), in table order, as
 * fdscope.parse.net.socket_rows gives them; None for another table or any line these parsers
 * do not take. */
static PyObject *
net_rows(PyObject *self, PyObject *args)
{
    PyObject *table, *text, *inodes;
    if (!PyArg_ParseTuple(args, "UUO:net_rows", &table, &text, &inodes))
        return NULL;
    if (inodes != Py_None && !PyAnySet_Check(inodes)) {
        PyErr_SetString(PyExc_TypeError, "inodes must be a set or None");
        return NULL;
    }
    static const char *const inet[] = {"tcp", "tcp6", "udp", "udp6", "raw", "raw6"};
    int is_unix = PyUnicode_CompareWithASCIIString(table, "unix") == 0, is_inet = 0;
    for (int i = 0; i < 6 && !is_unix && !is_inet; i++)
        is_inet = PyUnicode_CompareWithASCIIString(table, inet[i]) == 0;
    if ((!is_unix && !is_inet) || PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    const char *p = (const char *)PyUnicode_DATA(text), *end = p + PyUnicode_GET_LENGTH(text);
    PyObject *rows = PyList_New(0);
    if (rows == NULL)
        return NULL;
    int r = is_unix ? unix_parse(rows, text, inodes, p, end) : inet_parse(rows, table, inodes, p,
                                                                          end);
    if (r > 0)
        return rows;
    Py_DECREF(rows);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* "127.0.0.1:8080" or "[::1]:8080" from a table's hex address: each 32-bit word printed
 * with %08X from memory, so parsing a word and storing it natively gives the address bytes
 * (fdscope.parse.net._hex_to_ip does the same with sys.byteorder). inet_ntop as ss(8) and
 * Python's socket.inet_ntop. */
static int
format_inet(const char *hex, Py_ssize_t len, unsigned long long port, char out[64])
{
    unsigned char raw[16];
    for (Py_ssize_t w = 0; w < len / 8; w++) {
        const char *q = hex + w * 8;
        unsigned long long v;
        if (!take_hex_upper(&q, hex + w * 8 + 8, 1, &v) || q != hex + w * 8 + 8)
            return -1;
        uint32_t word = (uint32_t)v;
        memcpy(raw + w * 4, &word, 4);
    }
    char addr[INET6_ADDRSTRLEN];
    if (len == 8) { /* dotted quad, as inet_ntop writes it (which goes through sprintf) */
        char *a = addr;
        for (int i = 0; i < 4; i++) {
            unsigned b = raw[i];
            if (b >= 100)
                *a++ = (char)('0' + b / 100);
            if (b >= 10)
                *a++ = (char)('0' + b / 10 % 10);
            *a++ = (char)('0' + b % 10);
            *a++ = i < 3 ? '.' : '\0';
        }
    } else if (inet_ntop(AF_INET6, raw, addr, sizeof addr) == NULL) {
        return -1;
    }
    /* "%s:%llu" or "[%s]:%llu", without snprintf (a tenth of the cost) */
    char *w = out;
    size_t alen = strlen(addr);
    if (len != 8)
        *w++ = '[';
    memcpy(w, addr, alen);
    w += alen;
    if (len != 8)
        *w++ = ']';
    *w++ = ':';
    char num[24], *d = num + sizeof num;
    do {
        *--d = (char)('0' + port % 10);
        port /= 10;
    } while (port);
    memcpy(w, d, (size_t)(num + sizeof num - d));
    w += num + sizeof num - d;
    *w = '\0';
    return 0;
}

/* Rows of /proc/PID/net/{tcp,tcp6,udp,udp6,raw,raw6} (net/ipv4/tcp_ipv4.c get_tcp4_sock and
 * its siblings: "sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...")
 * for the inodes in `inodes` (None: every row), appended to `rows` with the addresses and
 * states as fdscope.parse.net.inet_fields gives them. 1, 0 when a row differs from that form,
 * -1 on error. */
static int
inet_parse(PyObject *rows, PyObject *proto, PyObject *inodes, const char *p, const char *end)
{
    skip_blanks(&p, end); /* "  sl  local_address ..." */
    const char *line = after_header(p, end, "sl ");
    if (line == NULL)
        return 0;
    int is_tcp = PyUnicode_CompareWithASCIIString(proto, "tcp") == 0 ||
                 PyUnicode_CompareWithASCIIString(proto, "tcp6") == 0;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            goto none;
        /* The kernel prints no control characters here; Python's str.splitlines() would also
         * break a line at some of them (\x0b, \x1c-\x1e, \x85...): leave such text to it. */
        for (const char *c = line; c < eol; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                goto none;
        const char *q = line, *la, *ra;
        unsigned long long v, lport, rport, st, tx, rx, uid, ino;
        skip_blanks(&q, eol);
        if (!take_number(&q, eol, 10, &v) || !take_literal(&q, eol, ": "))
            goto none;
        la = q;
        /* addresses are 8 (IPv4) or 32 (IPv6) hex digits: too wide for take_hex_upper */
        while (q < eol && ((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'F') ||
                           (*q >= 'a' && *q <= 'f')))
            q++;
        Py_ssize_t llen = q - la;
        if ((llen != 8 && llen != 32) || !take_literal(&q, eol, ":"))
            goto none;
        const char *lp = q;
        if (!take_hex_upper(&q, eol, 1, &lport) || q - lp != 4 || !take_literal(&q, eol, " "))
            goto none;
        ra = q;
        while (q < eol && ((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'F') ||
                           (*q >= 'a' && *q <= 'f')))
            q++;
        Py_ssize_t rlen = q - ra;
        if ((rlen != 8 && rlen != 32) || !take_literal(&q, eol, ":"))
            goto none;
        const char *rp = q;
        if (!take_hex_upper(&q, eol, 1, &rport) || q - rp != 4 || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 1, &st) || !take_literal(&q, eol, " ") ||
            !take_hex_upper(&q, eol, 1, &tx) || !take_literal(&q, eol, ":") ||
            !take_hex_upper(&q, eol, 1, &rx) || q >= eol || *q != ' ')
            goto none;
        /* tr:tm->when and retrnsmt: skipped as words */
        for (int word = 0; word < 2; word++) {
            skip_blanks(&q, eol);
            const char *w = q;
            while (q < eol && *q > ' ')
                q++;
            if (q == w || q >= eol || *q != ' ')
                goto none;
        }
        skip_blanks(&q, eol);
        if (!take_number(&q, eol, 10, &uid) || q >= eol || *q != ' ')
            goto none;
        skip_blanks(&q, eol);
        const char *w = q;
        while (q < eol && *q > ' ')
            q++;
        if (q == w || q >= eol || *q != ' ')
            goto none;
        skip_blanks(&q, eol);
        if (!take_number(&q, eol, 10, &ino) || (q < eol && *q != ' '))
            goto none;
        int want = wanted(inodes, ino);
        if (want < 0)
            goto fail;
        if (want) {
            char local[64], remote[64];
            if (format_inet(la, llen, lport, local) < 0 || format_inet(ra, rlen, rport, remote) < 0)
                goto none;
            int unset = rport == 0;
            for (Py_ssize_t i = 0; unset && i < rlen; i++)
                unset = ra[i] == '0';
            /* fdscope.parse.states.inet_state: a TCP LISTEN row's tx_queue is not the
             * backlog (send_q None); UDP and raw TCP_CLOSE (7) is "UNCONN", as ss(8) shows it;
             * a state without a name is left to the Python twin. */
            PyObject *state = !is_tcp && st == 7 ? str_unconn :
                              st >= 1 && st <= 13 ? tcp_states[st] : NULL;
            if (state == NULL)
                goto none;
            Py_INCREF(state);
            if (add_row(rows, ino, proto, state, PyUnicode_FromString(local),
                        unset ? Py_NewRef(Py_None) : PyUnicode_FromString(remote),
                        PyLong_FromUnsignedLongLong(rx),
                        is_tcp && st == 10 ? Py_NewRef(Py_None)
                                           : PyLong_FromUnsignedLongLong(tx)) < 0)
                goto fail;
        }
        line = eol + 1;
    }
    return 1;
none:
    return 0;
fail:
    return -1;
}


/* ---------------------------------------------------------------- rows_json */

#define MAX_FIELDS 16 /* of a NamedTuple row: FdEntry has 8 */

typedef struct {
    char *buf;
    size_t len, cap;
    int nonascii; /* a byte >= 0x80 was written: the result is decoded as UTF-8 */
} Out;

static int
out_grow(Out *o, size_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + more)
        cap *= 2;
    char *b = PyMem_Realloc(o->buf, cap);
    if (b == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static inline int
out_put(Out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap && out_grow(o, n) < 0)
        return -1;
    char *d = o->buf + o->len;
    /* Most pieces are keys and short values: two overlapping fixed-size copies each, which
     * the compiler inlines, instead of a call to memcpy. */
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    } else {
        memcpy(d, s, n);
    }
    o->len += n;
    return 0;
}

#define OUT_LIT(o, s) out_put((o), (s), sizeof(s) - 1)

/* A str as json.encoder.encode_basestring writes it (ensure_ascii=False): '"', '\\' and the
 * control characters escaped, everything else as is (UTF-8 in the output buffer). Returns -2
 * for a str that has no UTF-8 form (lone surrogates): the caller falls back to Python. */
/* 1 for the bytes json.dumps escapes: '"', '\\' and the control characters. */
static unsigned char json_escaped[256];

static int
out_str(Out *o, PyObject *s)
{
    Py_ssize_t n;
    const char *u;
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        u = (const char *)PyUnicode_DATA(s);
        n = PyUnicode_GET_LENGTH(s);
    } else if ((u = PyUnicode_AsUTF8AndSize(s, &n)) == NULL) {
        PyErr_Clear();
        return -2;
    } else {
        o->nonascii = 1;
    }
    Py_ssize_t plain = 0;
    while (plain < n && !json_escaped[(unsigned char)u[plain]])
        plain++;
    if (plain == n) { /* nothing to escape: the usual case */
        if (o->len + (size_t)n + 2 > o->cap && out_grow(o, (size_t)n + 2) < 0)
            return -1;
        char *w = o->buf + o->len;
        *w = '"';
        memcpy(w + 1, u, (size_t)n);
        w[n + 1] = '"';
        o->len += (size_t)n + 2;
        return 0;
    }
    if (out_grow(o, (size_t)n * 6 + 2) < 0)
        return -1;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: {
            static const char hex[] = "0123456789abcdef";
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->buf);
    return 0;
}

/* A spec compiled once per call: per field the text written before its value ('{"fd": ' or
 * ', "type": '), or skip, and the nested spec of a NamedTuple-valued field. */
typedef struct Spec {
    Py_ssize_t n;
    struct {
        char prefix[64];
        size_t plen;
        int skip;
        struct Spec *sub;
        /* The last array or object written for this field, and where its JSON is in the
         * output: the same one again (8,000 registrations share one events tuple, unbound
         * unix sockets one SocketInfo) is copied from there. Every row stays alive during the
         * call, so the pointer cannot be reused. */
        PyObject *last;
        size_t last_at, last_len;
    } f[MAX_FIELDS];
} Spec;

static void
spec_free(Spec *sp)
{
    if (sp == NULL)
        return;
    for (Py_ssize_t k = 0; k < sp->n; k++)
        spec_free(sp->f[k].sub);
    PyMem_Free(sp);
}

/* NULL with an exception set, or with none for a spec this encoder does not take (-> None). */
static Spec *
spec_compile(PyObject *spec)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) > MAX_FIELDS)
        return NULL;
    Spec *sp = PyMem_Calloc(1, sizeof(Spec));
    if (sp == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    sp->n = PyTuple_GET_SIZE(spec);
    int first = 1;
    for (Py_ssize_t k = 0; k < sp->n; k++) {
        PyObject *key = PyTuple_GET_ITEM(spec, k);
        if (key == Py_None) { /* a field that is not in the JSON (FdEntry.flags_raw) */
            sp->f[k].skip = 1;
            continue;
        }
        if (PyTuple_Check(key)) { /* (key, nested spec) */
            if (PyTuple_GET_SIZE(key) != 2)
                goto unsupported;
            sp->f[k].sub = spec_compile(PyTuple_GET_ITEM(key, 1));
            if (sp->f[k].sub == NULL)
                goto fail;
            key = PyTuple_GET_ITEM(key, 0);
        }
        Py_ssize_t n;
        const char *u;
        if (!PyUnicode_Check(key) || !PyUnicode_IS_COMPACT_ASCII(key) ||
            (u = PyUnicode_AsUTF8AndSize(key, &n)) == NULL || n > 40)
            goto unsupported;
        for (Py_ssize_t i = 0; i < n; i++)
            if ((unsigned char)u[i] < 0x20 || u[i] == '"' || u[i] == '\\')
                goto unsupported;
        sp->f[k].plen = (size_t)snprintf(sp->f[k].prefix, sizeof sp->f[k].prefix, "%s\"%s\": ",
                                         first ? "{" : ", ", u);
        first = 0;
    }
    return sp;
unsupported:
    spec_free(sp);
    return NULL;
fail:
    spec_free(sp);
    return NULL;
}

static int out_value(Out *o, PyObject *v);

/* One row (a tuple with at least the spec's fields) as a JSON object. -2: not encodable. */
static int
out_object(Out *o, PyObject *row, Spec *sp)
{
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < sp->n)
        return -2;
    int any = 0;
    for (Py_ssize_t k = 0; k < sp->n; k++) {
        if (sp->f[k].skip)
            continue;
        any = 1;
        if (out_put(o, sp->f[k].prefix, sp->f[k].plen) < 0)
            return -1;
        PyObject *v = PyTuple_GET_ITEM(row, k);
        if (v == sp->f[k].last) {
            size_t at = sp->f[k].last_at, n = sp->f[k].last_len;
            if (o->len + n > o->cap && out_grow(o, n) < 0)
                return -1;
            memcpy(o->buf + o->len, o->buf + at, n); /* from earlier in the buffer */
            o->len += n;
            continue;
        }
        size_t start = o->len;
        int r = sp->f[k].sub != NULL && v != Py_None ? out_object(o, v, sp->f[k].sub)
                                                     : out_value(o, v);
        if (r < 0)
            return r;
        if (PyTuple_CheckExact(v) || PyList_CheckExact(v) ||
            (sp->f[k].sub != NULL && v != Py_None)) {
            sp->f[k].last = v;
            sp->f[k].last_at = start;
            sp->f[k].last_len = o->len - start;
        }
    }
    return any ? OUT_LIT(o, "}") : OUT_LIT(o, "{}");
}

/* A JSON value: None, bool, int, str, or a tuple/list of those (an array). Separators are
 * json.dumps's defaults: ", " and ": ". Returns -2 for anything else. */
static int
out_value(Out *o, PyObject *v)
{
    if (v == Py_None)
        return OUT_LIT(o, "null");
    if (v == Py_True)
        return OUT_LIT(o, "true");
    if (v == Py_False)
        return OUT_LIT(o, "false");
    if (PyUnicode_CheckExact(v))
        return out_str(o, v);
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow == 0) {
            if (x == -1 && PyErr_Occurred())
                return -1;
            char num[24], *d = num + sizeof num; /* snprintf costs ~10x this */
            unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
            do {
                *--d = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            if (x < 0)
                *--d = '-';
            return out_put(o, d, (size_t)(num + sizeof num - d));
        }
        PyObject *text = PyObject_Str(v); /* wider than 64 bits (epoll data can be) */
        if (text == NULL)
            return -1;
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(text, &n);
        int r = u == NULL ? -1 : out_put(o, u, (size_t)n);
        Py_DECREF(text);
        return r;
    }
    if (PyTuple_CheckExact(v) || PyList_CheckExact(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        if (OUT_LIT(o, "[") < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && OUT_LIT(o, ", ") < 0)
                return -1;
            int r = out_value(o, PySequence_Fast_GET_ITEM(v, i));
            if (r < 0)
                return r;
        }
        return OUT_LIT(o, "]");
    }
    return -2;
}

/* rows_json(rows, spec, sep) -> str | None: each row (a NamedTuple) as one JSON object, the
 * objects joined by `sep`. spec names the keys in field order: a str, None (field not in the
 * JSON) or (key, nested spec) for a NamedTuple-valued field. None when a key or value is of a
 * form this encoder does not write (the Python renderer then does the job). */
static PyObject *
rows_json(PyObject *self, PyObject *args)
{
    PyObject *rows, *spec, *sep;
    if (!PyArg_ParseTuple(args, "O!O!U:rows_json", &PyList_Type, &rows, &PyTuple_Type, &spec,
                          &sep))
        return NULL;
    Py_ssize_t sep_len;
    const char *sep_s = PyUnicode_AsUTF8AndSize(sep, &sep_len);
    if (sep_s == NULL)
        return NULL;
    Spec *sp = spec_compile(spec);
    if (sp == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    Out o = {NULL, 0, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(rows);
    int r = out_grow(&o, (size_t)n * 200 + 16);
    for (Py_ssize_t i = 0; r == 0 && i < n; i++) {
        if (i)
            r = out_put(&o, sep_s, (size_t)sep_len);
        if (r == 0)
            r = out_object(&o, PyList_GET_ITEM(rows, i), sp);
    }
    spec_free(sp);
    PyObject *res;
    if (r == -2) {
        Py_INCREF(Py_None);
        res = Py_None;
    } else if (r < 0) {
        res = NULL;
    } else {
        /* ASCII (the usual case): copied, without decoding it again */
        res = o.nonascii ? PyUnicode_DecodeUTF8(o.buf ? o.buf : "", (Py_ssize_t)o.len, "strict")
                         : PyUnicode_New((Py_ssize_t)o.len, 127);
        if (res != NULL && !o.nonascii)
            memcpy(PyUnicode_DATA(res), o.buf ? o.buf : "", o.len);
    }
    PyMem_Free(o.buf);
    return res;
}

/* ---------------------------------------------------------------- link_kinds */

static PyObject *anon_prefix;  /* "anon_inode:" */

/* The inode of "PREFIX[DIGITS]" (the whole text, at most 19 ASCII digits), else -1. */
static long long
bracket_inode(const char *text, Py_ssize_t len, const char *prefix, Py_ssize_t plen)
{
    if (len < plen + 2 || len > plen + 20 || memcmp(text, prefix, (size_t)plen) != 0
        || text[len - 1] != ']')
        return -1;
    long long v = 0;
    for (Py_ssize_t i = plen; i < len - 1; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
    }
    return v;
}

/* link_kinds(texts) -> (kinds, inodes): per readlink text of /proc/PID/fd one byte of kinds,
 * 's' "socket:[INO]", 'p' "pipe:[INO]" (inodes: INO), '/' a path, 'a' "anon_inode:...", '?'
 * any other text, '-' None (a failed read); inodes 0 where the text names none. The Python
 * twin is fdscope.parse.fdkinds.link_kinds. */
static PyObject *
link_kinds(PyObject *self, PyObject *texts)
{
    if (!PyList_Check(texts)) {
        PyErr_SetString(PyExc_TypeError, "link_kinds: texts must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(texts);
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, n), *inodes = PyList_New(n);
    if (kinds == NULL || inodes == NULL)
        goto fail;
    char *k = PyBytes_AS_STRING(kinds);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(texts, i);
        long long ino = -1;
        char kind = '?';
        if (t == Py_None) {
            kind = '-';
        } else if (!PyUnicode_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "link_kinds: texts must be str or None");
            goto fail;
        } else if (PyUnicode_IS_ASCII(t)) {
            const char *s = (const char *)PyUnicode_DATA(t);
            Py_ssize_t len = PyUnicode_GET_LENGTH(t);
            if ((ino = bracket_inode(s, len, "socket:[", 8)) >= 0)
                kind = 's';
            else if ((ino = bracket_inode(s, len, "pipe:[", 6)) >= 0)
                kind = 'p';
            else if (len > 0 && s[0] == '/')
                kind = '/';
            else if (len >= 11 && memcmp(s, "anon_inode:", 11) == 0)
                kind = 'a';
        } else if (PyUnicode_READ_CHAR(t, 0) == '/') {
            kind = '/';
        } else if (PyUnicode_GET_LENGTH(t) >= 11
                   && PyUnicode_Tailmatch(t, anon_prefix, 0, 11, -1) == 1) {
            kind = 'a';
        }
        k[i] = kind;
        PyObject *num = PyLong_FromLongLong(ino > 0 ? ino : 0);
        if (num == NULL)
            goto fail;
        PyList_SET_ITEM(inodes, i, num);
    }
    return Py_BuildValue("(NN)", kinds, inodes);
fail:
    Py_XDECREF(kinds);
    Py_XDECREF(inodes);
    return NULL;
}

/* ---------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"readlinkat_many", readlinkat_many, METH_VARARGS,
     "readlinkat_many(dir_fd, names) -> (texts, [(index, errno)])"},
    {"read_many", read_many, METH_VARARGS,
     "read_many(dir_fd, names) -> (texts, [(index, errno)])"},
    {"kcmp_many", kcmp_many, METH_VARARGS,
     "kcmp_many(pid, [(fd1, fd2) | (fd, epfd, tfd, toff)]) -> [kcmp result or -errno]"},
    {"epoll_rows", epoll_rows, METH_O,
     "epoll_rows(fdinfo_text) -> [(tfd, mask, data, ino, st_dev)] | None"},
    {"net_rows", net_rows, METH_VARARGS,
     "net_rows(table, text, inodes) -> [(inode, proto, state, local, remote, recv_q, send_q)]"
     " | None"},
    {"link_kinds", link_kinds, METH_O,
     "link_kinds(texts) -> (kinds: bytes, inodes: [int])"},
    {"rows_json", rows_json, METH_VARARGS,
     "rows_json(rows, spec, sep) -> str | None: NamedTuple rows as JSON objects"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fdscope_speedups",
    "C versions of fdscope's per-fd loops (optional; fdscope has Python twins).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fdscope_speedups(void)
{
    digits_init();
    for (int c = 0; c < 0x20; c++)
        json_escaped[c] = 1;
    json_escaped['"'] = json_escaped['\\'] = 1;
    str_unix = PyUnicode_InternFromString("unix");
    str_listen = PyUnicode_InternFromString("LISTEN");
    /* include/uapi/linux/net.h socket_state, as fdscope.parse.net.UNIX_STATES names them */
    static const char *const names[5] = {"FREE", "UNCONNECTED", "CONNECTING", "CONNECTED",
                                         "DISCONNECTING"};
    for (int i = 0; i < 5; i++) {
        unix_states[i] = PyUnicode_InternFromString(names[i]);
        if (unix_states[i] == NULL)
            return NULL;
    }
    /* include/net/tcp_states.h, as fdscope.parse.states.TCP_STATES names them */
    static const char *const tcp[14] = {NULL, "ESTABLISHED", "SYN_SENT", "SYN_RECV",
                                        "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
                                        "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
                                        "NEW_SYN_RECV", "BOUND_INACTIVE"};
    for (int i = 1; i < 14; i++) {
        tcp_states[i] = PyUnicode_InternFromString(tcp[i]);
        if (tcp_states[i] == NULL)
            return NULL;
    }
    anon_prefix = PyUnicode_InternFromString("anon_inode:");
    if (anon_prefix == NULL)
        return NULL;
    str_unconn = PyUnicode_InternFromString("UNCONN");
    if (str_unconn == NULL)
        return NULL;
    if (str_unix == NULL || str_listen == NULL)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    /* fdscope/speedups.py uses the module only when this matches its own API number: a build
     * left over from other sources must not be called with the wrong arguments. */
    if (mod != NULL && PyModule_AddIntConstant(mod, "API", FDSCOPE_SPEEDUPS_API) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
