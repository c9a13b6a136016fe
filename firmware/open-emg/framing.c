/* Open EMG framing (see framing.h and devices/open-emg.md). Portable C99, no allocation. */
#include "framing.h"

#include <string.h>

uint16_t oemg_crc16_ccitt_false(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    while (n--) {
        crc ^= (uint16_t)((uint16_t)(*p++) << 8);
        for (int i = 0; i < 8; i++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static uint8_t *put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

size_t oemg_stream_bytes(void) { return sizeof(oemg_stream_t); }

void oemg_init(oemg_stream_t *s, uint8_t channel_count, uint16_t default_rate_hz, uint16_t sets_per_frame,
               const uint16_t *rates_hz, uint8_t rate_count)
{
    memset(s, 0, sizeof *s);
    s->channel_count = channel_count > OEMG_MAX_CHANNELS ? OEMG_MAX_CHANNELS : channel_count;
    s->default_rate_hz = default_rate_hz;
    s->rates_hz = rates_hz;
    s->rate_count = rate_count;
    s->channels = s->channel_count;
    oemg_set_sets_per_frame(s, sets_per_frame);
}

void oemg_set_sets_per_frame(oemg_stream_t *s, uint16_t sets)
{
    if (sets < 1)
        sets = 1;
    s->sets_per_frame = sets > OEMG_MAX_SETS ? OEMG_MAX_SETS : sets;
}

uint16_t oemg_sets_for_mtu(const oemg_stream_t *s, uint16_t att_mtu)
{
    size_t room = att_mtu > 3 + OEMG_HEADER_BYTES + OEMG_CRC_BYTES ? att_mtu - 3u - OEMG_HEADER_BYTES - OEMG_CRC_BYTES : 0;
    size_t sets = room / (2u * (s->channels ? s->channels : 1));
    return (uint16_t)(sets < s->sets_per_frame ? sets : s->sets_per_frame);
}

static int rate_supported(const oemg_stream_t *s, uint16_t rate)
{
    if (rate == s->default_rate_hz)
        return 1;
    for (uint8_t i = 0; i < s->rate_count; i++)
        if (s->rates_hz[i] == rate)
            return 1;
    return 0;
}

static uint8_t bits_set(uint8_t v)
{
    uint8_t n = 0;
    for (; v; v &= (uint8_t)(v - 1))
        n++;
    return n;
}

static void reset_acquisition(oemg_stream_t *s)
{
    s->seq = 0;
    s->next_index = 0;
    s->overrun_count = 0;
    s->overrun_pending = 0;
    s->filling.sets = 0;
    s->head = 0;
    s->count = 0;
}

size_t oemg_handle_control(oemg_stream_t *s, const uint8_t *cmd, size_t len, uint64_t now_us, uint8_t *reply)
{
    uint8_t op = len ? cmd[0] : 0;
    uint8_t status;
    reply[0] = op;
    switch (op) {
    case OEMG_OP_START: {
        if (len != 4) {
            status = OEMG_STATUS_INVALID;
            break;
        }
        uint16_t rate = (uint16_t)(cmd[1] | (cmd[2] << 8));
        uint8_t mask = cmd[3];
        if (mask == 0 || (mask >> s->channel_count) != 0 || !rate_supported(s, rate)) {
            status = OEMG_STATUS_INVALID;
        } else if (s->streaming) {
            status = OEMG_STATUS_BUSY;
        } else {
            s->rate_hz = rate;
            s->channel_mask = mask;
            s->channels = bits_set(mask);
            reset_acquisition(s);
            s->streaming = 1;
            status = OEMG_STATUS_OK;
        }
        break;
    }
    case OEMG_OP_STOP:
        status = len != 1 ? OEMG_STATUS_INVALID : s->streaming ? OEMG_STATUS_OK : OEMG_STATUS_BUSY;
        if (status == OEMG_STATUS_OK)
            oemg_disconnected(s);
        break;
    case OEMG_OP_TIME_SYNC:
        if (len != 1) {
            status = OEMG_STATUS_INVALID;
            break;
        }
        reply[1] = OEMG_STATUS_OK;
        put_le(reply + 2, now_us, 8);
        return 10;
    default:
        status = OEMG_STATUS_UNSUPPORTED;
        break;
    }
    reply[1] = status;
    return 2;
}

void oemg_disconnected(oemg_stream_t *s)
{
    s->streaming = 0;
    s->filling.sets = 0;
    s->count = 0;   /* STOP discards unsent frames */
}

static void count_overrun(oemg_stream_t *s)
{
    if (s->overrun_count < 0xFFFF)
        s->overrun_count++;
}

static void commit(oemg_stream_t *s)
{
    if (s->count == OEMG_QUEUE_FRAMES) {   /* full: drop the oldest, feedback values fresh data */
        s->head = (uint8_t)((s->head + 1) % OEMG_QUEUE_FRAMES);
        s->count--;
        count_overrun(s);
        /* the frame that now follows the dropped one says so */
        (s->count ? &s->queue[s->head] : &s->filling)->flags |= OEMG_FLAG_OVERRUN;
    }
    s->queue[(s->head + s->count) % OEMG_QUEUE_FRAMES] = s->filling;
    s->count++;
    s->filling.sets = 0;
}

void oemg_push_set(oemg_stream_t *s, const int16_t *set, uint64_t t_us, uint8_t flags)
{
    if (!s->streaming)
        return;
    oemg_block_t *b = &s->filling;
    if (b->sets == 0) {
        b->first_index = s->next_index;
        b->device_time_us = t_us;
        b->flags = s->overrun_pending ? OEMG_FLAG_OVERRUN : 0;
        s->overrun_pending = 0;
    }
    memcpy(&b->samples[(size_t)b->sets * s->channels], set, sizeof(int16_t) * s->channels);
    b->flags |= (uint8_t)(flags & (OEMG_FLAG_LEAD_OFF | OEMG_FLAG_SATURATED));
    b->sets++;
    s->next_index++;   /* wraps 2^32 - 1 -> 0 by unsigned arithmetic */
    if (b->sets >= s->sets_per_frame)
        commit(s);
}

void oemg_lost_sets(oemg_stream_t *s, uint32_t n)
{
    if (!s->streaming || n == 0)
        return;
    if (s->filling.sets)   /* a frame holds contiguous sets only: close the one being filled */
        commit(s);
    s->next_index += n;
    count_overrun(s);
    s->overrun_pending = 1;   /* the next frame started says so */
}

uint8_t oemg_queued(const oemg_stream_t *s) { return s->count; }

size_t oemg_next_frame(oemg_stream_t *s, uint8_t *out, size_t cap)
{
    if (s->count == 0)
        return 0;
    const oemg_block_t *b = &s->queue[s->head];
    size_t n = (size_t)b->sets * s->channels;
    size_t len = OEMG_HEADER_BYTES + 2 * n + OEMG_CRC_BYTES;
    if (len > cap)
        return 0;
    uint8_t flags = b->flags;
    uint8_t *p = put_le(out, s->seq, 2);
    p = put_le(p, b->first_index, 4);
    p = put_le(p, b->device_time_us, 8);
    *p++ = flags;
    for (size_t i = 0; i < n; i++)
        p = put_le(p, (uint16_t)b->samples[i], 2);
    put_le(p, oemg_crc16_ccitt_false(out, len - OEMG_CRC_BYTES), 2);
    s->seq++;
    s->head = (uint8_t)((s->head + 1) % OEMG_QUEUE_FRAMES);
    s->count--;
    return len;
}

void oemg_encode_info(const oemg_stream_t *s, uint8_t adc_bits, uint8_t kind, uint32_t nv_per_lsb,
                      uint8_t out[OEMG_INFO_BYTES])
{
    out[0] = OEMG_PROTOCOL_VERSION;
    out[1] = s->channel_count;
    put_le(out + 2, s->default_rate_hz, 2);
    out[4] = adc_bits;
    out[5] = kind;
    out[6] = (uint8_t)(s->sets_per_frame > 255 ? 255 : s->sets_per_frame);
    out[7] = 0;
    put_le(out + 8, nv_per_lsb, 4);
}

void oemg_encode_status(const oemg_stream_t *s, uint8_t battery_pct, uint8_t contact_bits, uint8_t charging,
                        uint8_t out[OEMG_STATUS_BYTES])
{
    out[0] = battery_pct;
    out[1] = contact_bits;
    put_le(out + 2, s->overrun_count, 2);
    out[4] = charging ? 1 : 0;
}
