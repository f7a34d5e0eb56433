/* The C load client for `gtls bench`'s bulk scenarios (built on demand by gtls/bench/cclient.py).
 *
 * The Python load client (gtls/bench/loadgen.py) spends more CPU per KiB than the gtls server, so with one load core
 * it, not the server, sets the MB/s. This client does the same work in C, on the system OpenSSL: one TLS stream to
 * 127.0.0.1:PORT that writes TOTAL bytes in WRITE_SIZE writes while reading the echo back (at most 1 MiB in flight),
 * or with --http, HTTP/1.0 POST bodies of HTTP_BODY bytes (one request per connection, read to EOF). It verifies the
 * server against CA_FILE for the name "localhost" and prints {"bytes": …, "elapsed": …, "cpu": …} as loadgen does.
 *
 *   bulk_client PORT CA_FILE VERSION(1.2|1.3) WRITE_SIZE TOTAL TIMEOUT [--http HTTP_BODY] [--cert CHAIN --key KEY]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_BYTES (8u << 20)
#define WINDOW (1u << 20)
#define READ_BYTES 65536

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 + (double)usage.ru_stime.tv_sec +
           (double)usage.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    unsigned long code = ERR_get_error();
    fprintf(stderr, "bulk_client: %s: %s\n", what, code ? ERR_error_string(code, NULL) : strerror(errno));
    exit(1);
}

static SSL *open_stream(SSL_CTX *ctx, int port, int *fd_out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)) die("SSL_new");
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (!SSL_set1_host(ssl, "localhost")) die("SSL_set1_host");
    if (SSL_connect(ssl) != 1) die("handshake");
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) die("fcntl");
    *fd_out = fd;
    return ssl;
}

/* Write `total` bytes (`data`, `data_len` long, repeated) in `write_size` writes while reading the answer, with at
 * most `window` bytes unanswered; stop after `expect` bytes read, or at EOF when `expect` is 0. Returns bytes read. */
static size_t pump(SSL *ssl, int fd, const unsigned char *data, size_t data_len, size_t total, size_t write_size,
                   size_t window, size_t expect, double deadline) {
    static unsigned char buffer[READ_BYTES];
    size_t written = 0, received = 0;
    for (;;) {
        if (now() > deadline) {
            fprintf(stderr, "bulk_client: timed out after %zu bytes read\n", received);
            exit(1);
        }
        int want_write = 0, progress = 0;
        /* A write that could not finish is retried with the same arguments, as OpenSSL requires: `written` did not
         * move, so offset and length are recomputed identically. */
        while (written < total && written - received < window) {
            size_t offset = written % data_len;
            size_t chunk = write_size;
            if (chunk > total - written) chunk = total - written;
            if (chunk > data_len - offset) chunk = data_len - offset;
            int n = SSL_write(ssl, data + offset, (int)chunk);
            if (n > 0) {
                written += (size_t)n;
                progress = 1;
                continue;
            }
            int error = SSL_get_error(ssl, n);
            if (error == SSL_ERROR_WANT_WRITE) want_write = 1;
            else if (error != SSL_ERROR_WANT_READ) die("SSL_write");
            break;
        }
        for (;;) {
            int n = SSL_read(ssl, buffer, sizeof buffer);
            if (n > 0) {
                received += (size_t)n;
                progress = 1;
                if (expect != 0 && received >= expect) return received;
                continue;
            }
            int error = SSL_get_error(ssl, n);
            if (error == SSL_ERROR_WANT_READ) break;
            if (error == SSL_ERROR_WANT_WRITE) {
                want_write = 1;
                break;
            }
            if (error == SSL_ERROR_ZERO_RETURN || error == SSL_ERROR_SYSCALL) {
                ERR_clear_error();
                return received; /* close_notify, or an HTTP server's close after its answer */
            }
            die("SSL_read");
        }
        /* Reading may have reopened the window: write again before sleeping (a poll now could wait for an echo
         * of data never sent). Sleep only when a whole round moved nothing. */
        if (progress) continue;
        struct pollfd pfd = {.fd = fd, .events = (short)(POLLIN | (want_write ? POLLOUT : 0))};
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) die("poll");
    }
}

static void close_stream(SSL *ssl, int fd) {
    SSL_shutdown(ssl); /* close_notify, without waiting for the answer: the same for every server */
    SSL_free(ssl);
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bulk_client PORT CA_FILE VERSION WRITE_SIZE TOTAL TIMEOUT [--http BODY] "
                        "[--cert CHAIN --key KEY]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *ca_file = argv[2];
    int version = strcmp(argv[3], "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    size_t write_size = strtoull(argv[4], NULL, 10);
    size_t total = strtoull(argv[5], NULL, 10);
    double timeout = atof(argv[6]);
    size_t http_body = 0;
    const char *cert = NULL, *key = NULL;
    for (int i = 7; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--http") == 0) http_body = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--cert") == 0) cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0) key = argv[i + 1];
    }
    if (write_size == 0 || total == 0) {
        fprintf(stderr, "bulk_client: WRITE_SIZE and TOTAL must be positive\n");
        return 2;
    }

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) die("CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
        die("client certificate");

    unsigned char *body = malloc(BODY_BYTES + 128);
    if (body == NULL || RAND_bytes(body, BODY_BYTES) != 1) die("body");

    double cpu_start = cpu_seconds(), started = now(), deadline = started + timeout;
    size_t moved = 0;
    int fd;
    if (http_body == 0) {
        SSL *ssl = open_stream(ctx, port, &fd);
        moved = pump(ssl, fd, body, BODY_BYTES, total, write_size, WINDOW, total, deadline);
        close_stream(ssl, fd);
    } else {
        /* nginx answers after the whole body: one POST per connection; its answer carries the body back. */
        while (moved < total) {
            size_t size = total - moved < http_body ? total - moved : http_body;
            if (size > BODY_BYTES) size = BODY_BYTES;
            char header[128];
            int header_len = snprintf(header, sizeof header, "POST / HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", size);
            unsigned char *request = malloc((size_t)header_len + size);
            if (request == NULL) die("malloc");
            memcpy(request, header, (size_t)header_len);
            memcpy(request + header_len, body, size);
            SSL *ssl = open_stream(ctx, port, &fd);
            size_t length = (size_t)header_len + size;
            size_t received = pump(ssl, fd, request, length, length, write_size, length, 0, deadline);
            close_stream(ssl, fd);
            free(request);
            if (received < size) {
                fprintf(stderr, "bulk_client: HTTP echo returned %zu bytes for a %zu-byte body\n", received, size);
                return 1;
            }
            moved += size;
        }
    }
    printf("{\"bytes\": %zu, \"elapsed\": %.6f, \"cpu\": %.6f}\n", moved, now() - started, cpu_seconds() - cpu_start);
    SSL_CTX_free(ctx);
    free(body);
    return 0;
}
