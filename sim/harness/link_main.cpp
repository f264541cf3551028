// The chip behind its host link (sim/link_rtl.py: ChunkedPort around ChipSystem), clocked from
// C++: the fast `sim` transport (sim/link_fast.py). No Python runs per cycle.
//
// It serves the messages of sim/benches/link_bench.py (sim/link_rtl.py defines them) on stdin
// and stdout, and moves chunks with the bench's cycle timing, so that every answer, the
// chip's STATUS cycle count included, and every cycle count reported are the cocotb bench's:
//
// * reset: the design's own power-on reset holds it for its first POWER_ON_RESET rising edges
//   (ChunkedPort on one clock has no rst input), then START_DELAY more edges pass before the
//   count of cycles starts;
// * a chunk goes in (or out) at the first falling edge where rx_ready (tx_valid) is high, and
//   is taken at the next rising edge; the bench's feeder and collector both look at every
//   falling edge, so both run in the same per-cycle loop here;
// * a request's cycle count is the rising edges since the start up to the one where both its
//   last chunk went in and the last chunk of its answers came out;
// * IDLE lets its cycles pass with rx_valid and tx_ready low.
//
// Built by sim/link_fast.py with -DCHUNK=<bytes per handshake>, -DPOWER_ON_RESET=<edges> and
// -DSTART_DELAY=<periods> (sim/link_rtl.py's CHUNK, POWER_ON_RESET and START_DELAY).
// Argument: the cycles a request may take after its last byte before it counts as a hang.
// Verilator's own prints ($display) go to stderr: stdout carries only the messages.

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <unistd.h>

#include "Vtop.h"
#include "verilated.h"

#define HARNESS_NAME "spikefab link harness"
#include "messages.h"

#if !defined(CHUNK) || !defined(POWER_ON_RESET) || !defined(START_DELAY)
#error "build with -DCHUNK, -DPOWER_ON_RESET and -DSTART_DELAY (sim/link_fast.py does)"
#endif

static_assert(CHUNK % 4 == 0, "a chunk is a whole number of 32-bit words");

namespace {

// Counts the frames a byte stream completes as firmware/protocol.py's SlipDecoder.feed does:
// an END completes a frame when any byte came since the last END (an escape, an over-long
// body and a bad escape all complete one too; only END END is an empty frame, skipped).
struct FrameCounter {
    bool pending = false;
    int feed(const uint8_t *data, size_t n) {
        int frames = 0;
        for (size_t k = 0; k < n; ++k) {
            if (data[k] == END) {
                frames += pending;
                pending = false;
            } else {
                pending = true;
            }
        }
        return frames;
    }
    void discard() { pending = false; }
};

class Harness {
  public:
    Harness(VerilatedContext *context, uint64_t request_timeout)
        : top_(new Vtop{context}), request_timeout_(request_timeout) {}

    ~Harness() { top_->final(); }

    // link_bench.py: the power-on reset's edges, then START_DELAY clock periods before the
    // start.
    void reset() {
        top_->clk = 0;
        top_->rx_valid = 0;
        top_->tx_ready = 0;
        top_->eval();
        for (int k = 0; k < POWER_ON_RESET + START_DELAY; ++k) cycle();
        cycles_ = 0;
    }

    void serve() {
        uint8_t head[8];
        std::vector<uint8_t> data, answer;
        for (;;) {
            read_exactly(head, 4);
            uint32_t length = le32(head);
            if (length == END_OF_RUN) return;
            if (length == IDLE) {
                read_exactly(head, 8);
                uint64_t cycles = le64(head);
                uint8_t drops;
                read_exactly(&drops, 1);
                for (uint64_t k = 0; k < cycles; ++k) cycle();
                if (drops) requests_.discard();  // the link dropped any half frame
                answer.clear();
                reply(answer);
                continue;
            }
            data.resize(length);
            read_exactly(data.data(), length);
            request(data, answer);
            reply(answer);
        }
    }

  private:
    // A falling edge, where the bench looks at the outputs and sets the inputs, then the
    // rising edge that takes them.
    void falling() {
        top_->clk = 0;
        top_->eval();
    }

    void rising() {
        top_->clk = 1;
        top_->eval();
        ++cycles_;
    }

    void cycle() {
        falling();
        rising();
    }

    void request(const std::vector<uint8_t> &data, std::vector<uint8_t> &answer) {
        answer.clear();
        int expected = requests_.feed(data.data(), data.size());
        size_t fed = 0;
        int got = 0;
        bool fed_all = data.empty();
        uint64_t fed_at = cycles_;
        while (!fed_all || got < expected) {
            falling();
            bool feeding = !fed_all && top_->rx_ready;
            bool taking = got < expected && top_->tx_valid;
            if (feeding) {
                size_t n = std::min<size_t>(CHUNK, data.size() - fed);
                uint8_t chunk[CHUNK] = {0};
                std::memcpy(chunk, data.data() + fed, n);
                for (int w = 0; w < CHUNK / 4; ++w) top_->rx_data[w] = le32(chunk + 4 * w);
                top_->rx_count = n;
                top_->rx_valid = 1;
                fed += n;
            }
            if (taking) {
                size_t n = top_->tx_count;
                uint8_t chunk[CHUNK];
                for (int w = 0; w < CHUNK / 4; ++w) put_le(chunk + 4 * w, top_->tx_data[w], 4);
                answer.insert(answer.end(), chunk, chunk + n);
                got += responses_.feed(chunk, n);
                top_->tx_ready = 1;
            }
            rising();
            top_->rx_valid = 0;
            top_->tx_ready = 0;
            if (feeding && fed == data.size()) {
                fed_all = true;
                fed_at = cycles_;
            }
            // link_bench.py's with_timeout: counted from the last chunk in.
            if (fed_all && got < expected && cycles_ - fed_at >= request_timeout_) {
                char message[200];
                std::snprintf(message, sizeof message,
                              "no answer to a request within %" PRIu64
                              " cycles of its last byte (%d of %d frames answered, cycle %" PRIu64
                              ")",
                              request_timeout_, got, expected, cycles_);
                fail(message);
            }
        }
    }

    void reply(const std::vector<uint8_t> &answer) {
        uint8_t head[12];
        put_le(head, answer.size(), 4);
        put_le(head + 4, cycles_, 8);
        write_exactly(head, sizeof head);
        if (!answer.empty()) write_exactly(answer.data(), answer.size());
    }

    std::unique_ptr<Vtop> top_;
    uint64_t request_timeout_;
    uint64_t cycles_ = 0;  // rising edges since the start, as the bench counts them
    FrameCounter requests_, responses_;
};

}  // namespace

int main(int argc, char **argv) {
    return harness_main<Harness>(argc, argv, "usage: link_main REQUEST_TIMEOUT_CYCLES");
}
