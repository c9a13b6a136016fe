/*
 * Open EMG framing: the portable part of the reference firmware (devices/open-emg.md, protocol version 2).
 *
 * No hardware, no BLE stack, no allocation: the firmware hands it sample sets as the ADC produces them and
 * asks it for the next Data frame when the radio has room. It keeps the header honest:
 *   - seq counts notifications actually sent since START (wraps 65535 -> 0);
 *   - first_sample_index counts sample sets acquired since START, dropped ones included (wraps 2^32 - 1 -> 0);
 *   - device_time_us is the firmware clock at a frame's first sample set;
 *   - when the queue is full the oldest frame is dropped, overrun_count counts it (saturating at 65535) and the
 *     frame after it carries the overrun flag; sets the ADC lost before they reached this module are reported
 *     with oemg_lost_sets(): the index moves on by them, overrun_count counts one, the next frame is flagged;
 *   - every frame ends with a CRC-16/CCITT-FALSE of the bytes before it.
 * The Control characteristic's commands (START, STOP, TIME_SYNC) are parsed here too, with the status codes
 * of section 5. Everything is little-endian on the wire whatever the CPU.
 *
 * Compiled by the test suite with the host's C compiler (tests/test_firmware_framing.py) and checked against
 * biofeedback's Python decoder.
 */
#ifndef OPEN_EMG_FRAMING_H
#define OPEN_EMG_FRAMING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OEMG_PROTOCOL_VERSION 2
#define OEMG_HEADER_BYTES 15
#define OEMG_CRC_BYTES 2
#define OEMG_INFO_BYTES 12
#define OEMG_STATUS_BYTES 5
#define OEMG_MAX_CHANNELS 2
#ifndef OEMG_MAX_SETS
#define OEMG_MAX_SETS 56          /* (247 - 3 - 17) / (2 * 2): a full frame at MTU 247 with two channels */
#endif
#ifndef OEMG_QUEUE_FRAMES
#define OEMG_QUEUE_FRAMES 12      /* 240 ms of 20-set frames at 1 kHz (the profile asks for at least 200 ms) */
#endif

#define OEMG_FLAG_OVERRUN 0x01
#define OEMG_FLAG_LEAD_OFF 0x02
#define OEMG_FLAG_SATURATED 0x04

#define OEMG_OP_START 0x01
#define OEMG_OP_STOP 0x02
#define OEMG_OP_TIME_SYNC 0x03
#define OEMG_STATUS_OK 0
#define OEMG_STATUS_UNSUPPORTED 1
#define OEMG_STATUS_INVALID 2
#define OEMG_STATUS_BUSY 3

typedef struct {
    uint32_t first_index;
    uint64_t device_time_us;
    uint8_t flags;
    uint16_t sets;
    int16_t samples[OEMG_MAX_SETS * OEMG_MAX_CHANNELS];
} oemg_block_t;

typedef struct {
    /* configuration (oemg_init) */
    uint8_t channel_count;        /* channels the device has */
    uint16_t default_rate_hz;
    uint16_t sets_per_frame;
    const uint16_t *rates_hz;     /* supported rates, rate_count of them */
    uint8_t rate_count;
    /* state of the current acquisition */
    uint8_t streaming;
    uint16_t rate_hz;
    uint8_t channel_mask;
    uint8_t channels;             /* enabled channels */
    uint16_t seq;
    uint32_t next_index;          /* sample sets acquired since START */
    uint16_t overrun_count;
    uint8_t overrun_pending;      /* sets were lost: the next frame started carries the overrun flag */
    oemg_block_t filling;
    oemg_block_t queue[OEMG_QUEUE_FRAMES];
    uint8_t head;                 /* oldest queued frame */
    uint8_t count;
} oemg_stream_t;

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR (check value 0x29B1). */
uint16_t oemg_crc16_ccitt_false(const uint8_t *p, size_t n);

size_t oemg_stream_bytes(void);
void oemg_init(oemg_stream_t *s, uint8_t channel_count, uint16_t default_rate_hz, uint16_t sets_per_frame,
               const uint16_t *rates_hz, uint8_t rate_count);

/* Sets per frame that fit a notification of an ATT MTU (MTU - 3 bytes), at most sets_per_frame. */
uint16_t oemg_sets_for_mtu(const oemg_stream_t *s, uint16_t att_mtu);
void oemg_set_sets_per_frame(oemg_stream_t *s, uint16_t sets);

/* A Control write: fills reply (at most 10 bytes), returns its length. now_us: the device clock. */
size_t oemg_handle_control(oemg_stream_t *s, const uint8_t *cmd, size_t len, uint64_t now_us, uint8_t *reply);
/* The link dropped: acquisition stops as on STOP (section 5). */
void oemg_disconnected(oemg_stream_t *s);

/* One sample set of the enabled channels (ascending channel number), taken at device time t_us. */
void oemg_push_set(oemg_stream_t *s, const int16_t *set, uint64_t t_us, uint8_t flags);
/* n sample sets were acquired but lost before reaching oemg_push_set (e.g. an ADC DMA overrun). */
void oemg_lost_sets(oemg_stream_t *s, uint32_t n);
/* Frames waiting to be sent. */
uint8_t oemg_queued(const oemg_stream_t *s);
/* Encode the oldest queued frame into out (cap bytes) and take it off the queue: its length, 0 if none or too big. */
size_t oemg_next_frame(oemg_stream_t *s, uint8_t *out, size_t cap);

void oemg_encode_info(const oemg_stream_t *s, uint8_t adc_bits, uint8_t kind, uint32_t nv_per_lsb,
                      uint8_t out[OEMG_INFO_BYTES]);
void oemg_encode_status(const oemg_stream_t *s, uint8_t battery_pct, uint8_t contact_bits, uint8_t charging,
                        uint8_t out[OEMG_STATUS_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
