// What both C++ harnesses (link_main.cpp, uart_main.cpp) share: the message stream with
// Python on stdin and stdout (sim/link_rtl.py defines the messages), its little-endian
// fields, how a harness gives up, and its main. Include it after verilated.h and after
// defining HARNESS_NAME, which its errors start with.

#ifndef SPIKEFAB_HARNESS_MESSAGES_H
#define SPIKEFAB_HARNESS_MESSAGES_H

#ifndef HARNESS_NAME
#error "define HARNESS_NAME before including messages.h"
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <unistd.h>

namespace {

constexpr uint32_t END_OF_RUN = 0xFFFFFFFFu;  // sim/link_rtl.py: END_OF_RUN
constexpr uint32_t IDLE = 0xFFFFFFFEu;        // sim/link_rtl.py: IDLE
constexpr uint8_t END = 0xC0;                 // hdl/abi/link.py: END

int out_fd = -1;  // the messages' stdout, kept apart from Verilator's

[[noreturn]] void fail(const char *what) {
    std::fprintf(stderr, HARNESS_NAME ": %s\n", what);
    std::fflush(stderr);
    std::exit(3);
}

void read_exactly(void *buffer, size_t n) {
    auto *p = static_cast<uint8_t *>(buffer);
    while (n) {
        ssize_t got = ::read(0, p, n);
        if (got == 0) fail("the host closed its end of the link");
        if (got < 0) {
            if (errno == EINTR) continue;
            fail(std::strerror(errno));
        }
        p += got;
        n -= static_cast<size_t>(got);
    }
}

void write_exactly(const void *buffer, size_t n) {
    auto *p = static_cast<const uint8_t *>(buffer);
    while (n) {
        ssize_t put = ::write(out_fd, p, n);
        if (put < 0) {
            if (errno == EINTR) continue;
            fail(std::strerror(errno));
        }
        p += put;
        n -= static_cast<size_t>(put);
    }
}

// Little-endian fields, as Python's struct "<" formats write them.
uint32_t le32(const uint8_t *p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

uint64_t le64(const uint8_t *p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }

void put_le(uint8_t *p, uint64_t value, int bytes) {
    for (int k = 0; k < bytes; ++k) p[k] = uint8_t(value >> (8 * k));
}

// A harness's main: its argument (the cycles a request may take after its last byte before
// it counts as a hang), stdout kept for the messages (anything the model prints goes to
// stderr), then Harness(context, timeout).reset() and .serve().
template <class Harness>
int harness_main(int argc, char **argv, const char *usage) {
    if (argc < 2) fail(usage);
    uint64_t request_timeout = std::strtoull(argv[1], nullptr, 10);
    out_fd = ::dup(1);
    if (out_fd < 0 || ::dup2(2, 1) < 0) fail("cannot set up stdout");
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    {
        Harness harness(context.get(), request_timeout);
        harness.reset();
        harness.serve();
    }
    return 0;
}

}  // namespace

#endif
