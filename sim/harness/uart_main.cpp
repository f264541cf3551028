// The chip behind its board's UART (sim/link_uart.py: UartPort around the board top's
// ChipSystem), clocked from C++, with the host's UART played bit by bit here: how long a board
// takes at its baud rate (sim/board_timing.py). No Python runs per cycle.
//
// It serves the messages of sim/link_rtl.py (REQUEST_HEAD, ANSWER_HEAD, IDLE, END_OF_RUN), as
// sim/harness/link_main.cpp does, so sim/link_fast.py's FastLink drives it unchanged, plus
// LINE_COUNTS (sim/link_uart.py) for the time each line was busy, and three that let a host
// drive the line as a board's serial port does, requests and answers decoupled (SEND,
// RECEIVE, DRAIN: sim/link_uart.py's UartLineTransport). Unlike link_main, the bytes cross the
// design's pins as a board's do:
//
// * reset: the design's own power-on reset holds it for its first POWER_ON_RESET rising edges
//   (UartPort has no rst input), then START_DELAY more edges pass, with the receive line idle
//   (high), before the count of cycles starts;
// * the host's transmitter keeps a queue of bytes to send, which outlives the message that
//   filled it; it sends them on `rx` as 8N1 frames of DIVISOR clock cycles per bit (start bit,
//   8 data bits LSB first, stop bit), back to back, each level set at a falling edge and held
//   for DIVISOR cycles; bytes a message adds go out after those still queued, so the line
//   carries one byte at a time, as a real UART's shift register does;
// * the host receives on `tx`: a byte begins in the first cycle the idle line is low, each bit
//   is sampled in its middle (DIVISOR / 2 cycles into it), and the byte is complete when its
//   stop bit ends, 10 * DIVISOR cycles after it began; a low start bit at its middle and a
//   high stop bit are required (the chip's transmitter never glitches);
// * the host is ideal: whatever it sends after an answer starts in the cycle after that
//   answer's last stop bit (a real USB-serial adapter adds its own latency; none is modelled);
// * the clock runs only inside a message (REQUEST, IDLE, RECEIVE, DRAIN): between messages
//   the simulated time stands still, so the host's own work takes none;
// * a request's cycle count is the rising edges since the start up to the end of the stop bit
//   of the last byte of its answers; the rx line counts as busy in every cycle the host is
//   inside a byte (10 * DIVISOR per byte sent), the tx line in every cycle the received byte
//   is (10 * DIVISOR per byte answered), and a cycle with neither is quiet (the chip's own);
// * IDLE lets its cycles pass with the rx line idle; a byte from the chip then is an error.
//
// The line-level messages (a request length of SEND, RECEIVE or DRAIN, then their fields):
//
// * SEND, then a 32-bit length and that many bytes: queue them on the host's transmitter and
//   answer at once (an empty answer; no cycle passes);
// * RECEIVE, then a 64-bit cycle count: run the clock until the host has received a whole
//   frame from the chip (an END after other bytes, as firmware/protocol.py's SlipDecoder cuts
//   them), or until that many cycles passed without one. The answer carries, after its
//   ANSWER_HEAD (the bytes since the previous frame, up to its closing END; none when no frame
//   came in time, the bytes of a half frame then staying for the next RECEIVE) and before the
//   bytes, LINE_COUNTS's three counts; its cycle count is that of the end of the frame's last
//   stop bit;
// * DRAIN, then a 64-bit cycle count: run the clock until the tx line has been idle (no byte
//   being received) for that many cycles, and answer with the bytes thrown away: those of a
//   half frame received before and those received meanwhile.
//
// REQUEST and IDLE need the line settled (nothing queued to send, nothing half received):
// they count the frames of their own bytes and answers.
//
// Built by sim/link_uart.py with Verilator's flags of sim/link_fast.py plus -DDIVISOR=<clock
// cycles per bit> (the board's; the design's UART has the same divisor),
// -DPOWER_ON_RESET=<edges> and -DSTART_DELAY=<periods>. Argument: the cycles a request may take
// after its last byte went out before it counts as a hang. Verilator's own prints ($display)
// go to stderr: stdout carries only the messages.

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include <unistd.h>

#include "Vtop.h"
#include "verilated.h"

#define HARNESS_NAME "spikefab uart harness"
#include "messages.h"

#if !defined(DIVISOR) || !defined(POWER_ON_RESET) || !defined(START_DELAY)
#error "build with -DDIVISOR, -DPOWER_ON_RESET and -DSTART_DELAY (sim/link_uart.py does)"
#endif

static_assert(DIVISOR >= 4, "the design's UART needs at least 4 clock cycles per bit");

namespace {

constexpr uint32_t LINE_COUNTS = 0xFFFFFFFDu;  // sim/link_uart.py: LINE_COUNTS
constexpr uint32_t SEND = 0xFFFFFFFCu;         // sim/link_uart.py: SEND
constexpr uint32_t RECEIVE = 0xFFFFFFFBu;      // sim/link_uart.py: RECEIVE
constexpr uint32_t DRAIN = 0xFFFFFFFAu;        // sim/link_uart.py: DRAIN
constexpr int BITS = 10;                       // 8N1: start, 8 data, stop

// Counts the frames a byte stream completes as firmware/protocol.py's SlipDecoder.feed does
// (link_main.cpp's rule): an END completes a frame when any byte came since the last END.
struct FrameCounter {
    bool pending = false;
    int feed(uint8_t byte) {
        if (byte != END) {
            pending = true;
            return 0;
        }
        int frames = pending;
        pending = false;
        return frames;
    }
    void discard() { pending = false; }
};

// The host's transmitter: its queue of bytes on the rx line, back to back. The byte at the
// front is the one on the line; it leaves the queue when its stop bit ends, so bytes added
// while one is being sent wait their turn.
class Sender {
  public:
    void append(const uint8_t *data, size_t n) { queue_.insert(queue_.end(), data, data + n); }

    bool active() const { return !queue_.empty(); }

    // The line's level for the cycle about to begin.
    int level() const {
        if (queue_.empty() || bit_ == BITS - 1) return 1;  // idle, or the stop bit
        if (bit_ == 0) return 0;                           // the start bit
        return (queue_.front() >> (bit_ - 1)) & 1;
    }

    // One cycle of the line has passed.
    void advance() {
        if (queue_.empty() || ++timer_ < DIVISOR) return;
        timer_ = 0;
        if (++bit_ < BITS) return;
        bit_ = 0;
        queue_.pop_front();
    }

  private:
    std::deque<uint8_t> queue_;
    int bit_ = 0, timer_ = 0;  // both 0 whenever the queue is empty: a new byte starts afresh
};

// The host's receiver on the tx line, sampling each bit in its middle.
class Receiver {
  public:
    // The line's level during one cycle; whether that cycle lies inside a byte. ``byte`` is set
    // to the byte, else -1, when this cycle is the last of its stop bit.
    bool observe(int level, int &byte) {
        byte = -1;
        if (!active_) {
            if (level) return false;
            active_ = true;  // the first cycle of a start bit
            count_ = 0;
            shift_ = 0;
        }
        int bit = count_ / DIVISOR;
        if (count_ % DIVISOR == DIVISOR / 2) {
            if (bit == 0 && level) fail("a glitch on the chip's tx line (its start bit is high "
                                        "in its middle)");
            if (bit >= 1 && bit <= 8) shift_ |= uint8_t(level << (bit - 1));
            if (bit == BITS - 1 && !level) fail("a framing error on the chip's tx line (its "
                                                "stop bit is low)");
        }
        if (++count_ == BITS * DIVISOR) {
            active_ = false;
            byte = shift_;
        }
        return true;
    }

    bool active() const { return active_; }

  private:
    bool active_ = false;
    int count_ = 0;
    uint8_t shift_ = 0;
};

class Harness {
  public:
    Harness(VerilatedContext *context, uint64_t request_timeout)
        : top_(new Vtop{context}), request_timeout_(request_timeout) {}

    ~Harness() { top_->final(); }

    void reset() {
        top_->clk = 0;
        top_->rx = 1;
        top_->eval();
        for (int k = 0; k < POWER_ON_RESET + START_DELAY; ++k) {
            top_->clk = 0;
            top_->eval();
            top_->clk = 1;
            top_->eval();
        }
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
                settled("IDLE");
                idle(cycles);
                if (drops) requests_.discard();  // the link dropped any half frame
                answer.clear();
                reply(answer);
                continue;
            }
            if (length == LINE_COUNTS) {
                answer.resize(24);
                put_counts(answer.data());
                reply(answer);
                continue;
            }
            if (length == SEND) {
                read_exactly(head, 4);
                data.resize(le32(head));
                read_exactly(data.data(), data.size());
                sender_.append(data.data(), data.size());
                answer.clear();
                reply(answer);
                continue;
            }
            if (length == RECEIVE) {
                read_exactly(head, 8);
                answer.clear();
                if (receive(le64(head))) answer.swap(received_);
                uint8_t counts[24];
                put_counts(counts);
                reply(answer, counts, sizeof counts);
                continue;
            }
            if (length == DRAIN) {
                read_exactly(head, 8);
                drain(le64(head));
                answer.clear();
                answer.swap(received_);
                reply(answer);
                continue;
            }
            data.resize(length);
            read_exactly(data.data(), length);
            settled("a REQUEST");
            request(data, answer);
            reply(answer);
        }
    }

  private:
    // One clock cycle: the host's level on rx from the falling edge, the rising edge, then
    // the chip's tx as the host sees it until the next rising edge. Returns a byte the host
    // received in full in this cycle, else -1.
    int cycle() {
        bool sending = sender_.active();
        top_->clk = 0;
        top_->rx = sender_.level();
        top_->eval();
        top_->clk = 1;
        top_->eval();
        ++cycles_;
        int byte;
        bool receiving = receiver_.observe(top_->tx, byte);
        rx_busy_ += sending;
        tx_busy_ += receiving;
        quiet_ += !(sending || receiving);
        sender_.advance();
        return byte;
    }

    void request(const std::vector<uint8_t> &data, std::vector<uint8_t> &answer) {
        answer.clear();
        int expected = 0;
        for (uint8_t byte : data) expected += requests_.feed(byte);
        sender_.append(data.data(), data.size());
        int got = 0;
        uint64_t sent_at = cycles_;
        while (sender_.active() || got < expected) {
            bool sending = sender_.active();
            int byte = cycle();
            if (byte >= 0) {
                answer.push_back(uint8_t(byte));
                got += responses_.feed(uint8_t(byte));
            }
            if (sending && !sender_.active()) sent_at = cycles_;
            if (!sender_.active() && got < expected && cycles_ - sent_at >= request_timeout_) {
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

    void idle(uint64_t cycles) {
        for (uint64_t k = 0; k < cycles; ++k) {
            if (cycle() >= 0) {
                char message[120];
                std::snprintf(message, sizeof message,
                              "the chip sent a byte while the host was idle (cycle %" PRIu64 ")",
                              cycles_);
                fail(message);
            }
        }
    }

    // Runs the clock until a frame from the chip is complete (true; its bytes, and any before
    // it since the last frame, in received_) or ``most`` cycles passed without one (false).
    bool receive(uint64_t most) {
        for (uint64_t k = 0; k < most; ++k) {
            int byte = cycle();
            if (byte < 0) continue;
            received_.push_back(uint8_t(byte));
            if (responses_.feed(uint8_t(byte))) return true;
        }
        return false;
    }

    // Runs the clock until the tx line has been idle for ``quiet`` cycles, keeping in
    // received_ what came meanwhile; the half frame, if any, is forgotten.
    void drain(uint64_t quiet) {
        // Counted from the start, as a board's drain waits for the line to stay quiet.
        for (uint64_t still = 0; still < quiet;) {
            int byte = cycle();
            if (byte >= 0) received_.push_back(uint8_t(byte));
            still = receiver_.active() || byte >= 0 ? 0 : still + 1;
        }
        responses_.discard();
    }

    // REQUEST and IDLE count the frames of their own bytes and answers: bytes a SEND queued,
    // or a half frame RECEIVE left, would be counted in the wrong request.
    void settled(const char *what) {
        if (!sender_.active() && !receiver_.active() && received_.empty()) return;
        char message[200];
        std::snprintf(message, sizeof message,
                      "%s while the line is in use (bytes queued to send, or part of an "
                      "answer received): finish with RECEIVE or DRAIN first (cycle %" PRIu64 ")",
                      what, cycles_);
        fail(message);
    }

    void put_counts(uint8_t *p) const {
        put_le(p, rx_busy_, 8);
        put_le(p + 8, tx_busy_, 8);
        put_le(p + 16, quiet_, 8);
    }

    // ANSWER_HEAD (the answer's length, the cycles so far), ``extra`` (RECEIVE's line
    // counts), the answer.
    void reply(const std::vector<uint8_t> &answer, const uint8_t *extra = nullptr,
               size_t extra_size = 0) {
        uint8_t head[12];
        put_le(head, answer.size(), 4);
        put_le(head + 4, cycles_, 8);
        write_exactly(head, sizeof head);
        if (extra_size) write_exactly(extra, extra_size);
        if (!answer.empty()) write_exactly(answer.data(), answer.size());
    }

    std::unique_ptr<Vtop> top_;
    uint64_t request_timeout_;
    uint64_t cycles_ = 0;  // rising edges since the start
    uint64_t rx_busy_ = 0, tx_busy_ = 0, quiet_ = 0;  // cycles since the start, per line
    Sender sender_;
    Receiver receiver_;
    FrameCounter requests_, responses_;
    std::vector<uint8_t> received_;  // RECEIVE's bytes since the last whole frame
};

}  // namespace

int main(int argc, char **argv) {
    return harness_main<Harness>(argc, argv, "usage: uart_main REQUEST_TIMEOUT_CYCLES");
}
