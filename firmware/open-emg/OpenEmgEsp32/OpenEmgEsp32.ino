// Open EMG reference firmware: ESP32-S3 + two MyoWare 2.0 front ends, 1000 Hz per channel, devices/open-emg.md v2.
//
// Sampling: a hardware timer (gptimer via the Arduino-ESP32 3.x timer API) fires every 1 ms; its ISR stamps the
// device clock and wakes the acquisition task, which reads both ADC inputs and hands the set to the framing
// module. No busy loop and no delay() sets the sample clock. BLE: NimBLE-Arduino 2.x.
//
// NOT TRIED ON HARDWARE (see ../README.md): this sketch has not been compiled for or run on an ESP32; only
// framing.c, which holds every byte the host sees, is compiled and tested (tests/test_firmware_framing.py).
#include <Arduino.h>
#include <NimBLEDevice.h>
#include "esp_timer.h"

#include "framing.h"   // copy framing.c and framing.h from firmware/open-emg/ next to this file (README)

// ---- hardware -------------------------------------------------------------------------------------------
static const int PIN_LEFT = 1;    // ADC1_CH0 (GPIO1): MyoWare 2.0 #1 RAW output, left upper trapezius
static const int PIN_RIGHT = 2;   // ADC1_CH1 (GPIO2): MyoWare 2.0 #2 RAW output, right upper trapezius
static const int ADC_BITS = 12;
static const int ADC_MID = 2048;  // RAW idles at half supply: centre before sending (open-emg.md section 4)
// nV at the electrodes per ADC count = V_range / 2^bits / gain. 3.3 V / 4096 / 200 (MyoWare 2.0 RAW gain as its
// datasheet gives it: check your board's revision) = 4028 nV. The ESP32-S3 ADC at 11 dB spans about 0-3.1 V and
// is not linear near its ends: calibrate against a known signal before trusting absolute µV.
static const uint32_t NV_PER_LSB = 4028;
static const uint16_t RATE_HZ = 1000;
static const uint16_t SETS_PER_FRAME = 20;      // 20 ms of data per notification (open-emg.md 6.1)
static const uint16_t OTHER_RATES[] = {500};

// ---- UUIDs (open-emg.md section 3) ----------------------------------------------------------------------
#define SVC_UUID "b10fee00-0000-4d6b-8e4f-6f70656e454d"
#define INFO_UUID "b10fee01-0000-4d6b-8e4f-6f70656e454d"
#define CONTROL_UUID "b10fee02-0000-4d6b-8e4f-6f70656e454d"
#define DATA_UUID "b10fee03-0000-4d6b-8e4f-6f70656e454d"
#define STATUS_UUID "b10fee04-0000-4d6b-8e4f-6f70656e454d"

static oemg_stream_t stream;
static portMUX_TYPE streamLock = portMUX_INITIALIZER_UNLOCKED;
static TaskHandle_t adcTask;
static hw_timer_t *sampleTimer;
static volatile uint64_t tickTimeUs;
static volatile uint32_t ticksMissed;   // timer ticks the task did not get to: sets lost before framing

static NimBLECharacteristic *infoChar, *controlChar, *dataChar, *statusChar;
static volatile bool connected = false;
static uint16_t attMtu = 23;

static void IRAM_ATTR onSampleTick() {
  tickTimeUs = esp_timer_get_time();
  BaseType_t woken = pdFALSE;
  vTaskNotifyGiveFromISR(adcTask, &woken);
  portYIELD_FROM_ISR(woken);
}

static void acquisitionTask(void *) {
  for (;;) {
    // One notification per tick; more than one pending means the task fell behind: those sets were not taken.
    uint32_t pending = ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
    uint64_t t = tickTimeUs;
    int left = analogRead(PIN_LEFT), right = analogRead(PIN_RIGHT);
    uint8_t flags = 0;
    if (left <= 0 || left >= (1 << ADC_BITS) - 1 || right <= 0 || right >= (1 << ADC_BITS) - 1)
      flags |= OEMG_FLAG_SATURATED;
    int16_t both[2] = {(int16_t)(left - ADC_MID), (int16_t)(right - ADC_MID)};
    int16_t set[2];
    uint8_t n = 0;
    portENTER_CRITICAL(&streamLock);
    for (int c = 0; c < 2; c++)
      if (stream.channel_mask >> c & 1) set[n++] = both[c];
    if (pending > 1) oemg_lost_sets(&stream, pending - 1);
    oemg_push_set(&stream, set, t, flags);
    portEXIT_CRITICAL(&streamLock);
  }
}

static void sendStatus() {
  uint8_t s[OEMG_STATUS_BYTES];
  portENTER_CRITICAL(&streamLock);
  oemg_encode_status(&stream, 255 /* no battery gauge */, 0x03 /* MyoWare 2.0: no contact sensing */, 0, s);
  portEXIT_CRITICAL(&streamLock);
  statusChar->setValue(s, sizeof s);
  statusChar->notify();
}

class ControlCallbacks : public NimBLECharacteristicCallbacks {
  void onWrite(NimBLECharacteristic *c, NimBLEConnInfo &) override {
    NimBLEAttValue v = c->getValue();
    uint8_t reply[10];
    portENTER_CRITICAL(&streamLock);
    oemg_set_sets_per_frame(&stream, SETS_PER_FRAME);
    size_t n = oemg_handle_control(&stream, v.data(), v.length(), esp_timer_get_time(), reply);
    uint16_t fit = oemg_sets_for_mtu(&stream, attMtu);   // frames must fit MTU - 3 (open-emg.md 6.2)
    if (fit) oemg_set_sets_per_frame(&stream, fit);
    portEXIT_CRITICAL(&streamLock);
    c->setValue(reply, n);
    c->indicate();
  }
};

class ServerCallbacks : public NimBLEServerCallbacks {
  void onConnect(NimBLEServer *server, NimBLEConnInfo &info) override {
    connected = true;
    // 7.5-15 ms interval, latency 0, 3 s supervision timeout (units: 1.25 ms, 1.25 ms, -, 10 ms)
    server->updateConnParams(info.getConnHandle(), 6, 12, 0, 300);
  }
  void onDisconnect(NimBLEServer *, NimBLEConnInfo &, int) override {
    connected = false;
    attMtu = 23;
    portENTER_CRITICAL(&streamLock);
    oemg_disconnected(&stream);   // acquisition stops as on STOP; the host re-sends START
    portEXIT_CRITICAL(&streamLock);
    NimBLEDevice::startAdvertising();
  }
  void onMTUChange(uint16_t mtu, NimBLEConnInfo &) override { attMtu = mtu; }
};

void setup() {
  analogReadResolution(ADC_BITS);
  analogSetAttenuation(ADC_11db);
  oemg_init(&stream, 2, RATE_HZ, SETS_PER_FRAME, OTHER_RATES, 1);

  char name[16];
  uint8_t mac[6];
  esp_read_mac(mac, ESP_MAC_BT);
  snprintf(name, sizeof name, "OpenEMG-%02X%02X", mac[4], mac[5]);
  NimBLEDevice::init(name);
  NimBLEDevice::setMTU(247);
  NimBLEServer *server = NimBLEDevice::createServer();
  server->setCallbacks(new ServerCallbacks());
  NimBLEService *svc = server->createService(SVC_UUID);
  infoChar = svc->createCharacteristic(INFO_UUID, NIMBLE_PROPERTY::READ);
  controlChar = svc->createCharacteristic(CONTROL_UUID, NIMBLE_PROPERTY::WRITE | NIMBLE_PROPERTY::INDICATE);
  dataChar = svc->createCharacteristic(DATA_UUID, NIMBLE_PROPERTY::NOTIFY);
  statusChar = svc->createCharacteristic(STATUS_UUID, NIMBLE_PROPERTY::READ | NIMBLE_PROPERTY::NOTIFY);
  uint8_t info[OEMG_INFO_BYTES];
  oemg_encode_info(&stream, ADC_BITS, 0 /* raw */, NV_PER_LSB, info);
  infoChar->setValue(info, sizeof info);
  controlChar->setCallbacks(new ControlCallbacks());
  svc->start();
  NimBLEService *dis = server->createService("180A");
  dis->createCharacteristic("2A29", NIMBLE_PROPERTY::READ)->setValue("biofeedback open-emg reference");
  dis->createCharacteristic("2A24", NIMBLE_PROPERTY::READ)->setValue("OpenEMG-ESP32S3-MyoWare2");
  dis->createCharacteristic("2A26", NIMBLE_PROPERTY::READ)->setValue("0.1.0");
  dis->start();
  sendStatus();

  NimBLEAdvertising *adv = NimBLEDevice::getAdvertising();
  adv->addServiceUUID(SVC_UUID);      // service UUID in the advertisement,
  adv->enableScanResponse(true);      // the name in the scan response (open-emg.md section 2)
  adv->setName(name);
  adv->setMinInterval(160);           // 100-200 ms (units of 0.625 ms)
  adv->setMaxInterval(320);
  NimBLEDevice::startAdvertising();

  xTaskCreatePinnedToCore(acquisitionTask, "adc", 4096, nullptr, configMAX_PRIORITIES - 2, &adcTask, 1);
  sampleTimer = timerBegin(1000000);                  // 1 MHz timer clock
  timerAttachInterrupt(sampleTimer, &onSampleTick);
  timerAlarm(sampleTimer, 1000000 / RATE_HZ, true, 0);  // every 1 ms, auto-reload
}

void loop() {
  static uint8_t frame[OEMG_HEADER_BYTES + 2 * OEMG_MAX_SETS * OEMG_MAX_CHANNELS + OEMG_CRC_BYTES];
  static uint32_t lastStatusMs = 0;
  static uint16_t lastOverruns = 0;
  if (connected) {
    for (;;) {   // send every full frame the stack takes; the queue in framing.c absorbs short radio stalls
      portENTER_CRITICAL(&streamLock);
      size_t n = oemg_queued(&stream) ? oemg_next_frame(&stream, frame, attMtu - 3) : 0;
      portEXIT_CRITICAL(&streamLock);
      if (!n) break;
      dataChar->setValue(frame, n);
      dataChar->notify();
    }
    if (millis() - lastStatusMs >= 1000 && stream.overrun_count != lastOverruns) {  // at most once a second
      lastOverruns = stream.overrun_count;
      lastStatusMs = millis();
      sendStatus();
    }
  }
  vTaskDelay(pdMS_TO_TICKS(5));   // frames fill every 20 ms: polling every 5 ms adds at most 5 ms of latency
}
