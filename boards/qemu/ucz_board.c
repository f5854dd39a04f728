// ucompressd board support for MicroPython's ports/qemu on QEMU's MPS2 machines (AN385, AN505).
// Only what the port lacks, kept small:
// - time: SysTick at 1 kHz from the CPU clock; ticks_us adds the current count, so under
//   `-icount` every figure is emulated time (a function of the instructions executed);
// - stdin: the UART receive interrupt fills a ring buffer, so Ctrl-C stops running code and
//   select/poll on stdin works (the port polls the UART only when Python asks for a byte);
// - the UART itself (uart.c knows only the AN385 address): base address from the board's .mk;
// - UCZ_UNALIGN_TRAP: CCR.UNALIGN_TRP, so unaligned word/halfword accesses fault as on a
//   Cortex-M0+ (QEMU has no M0 machine with enough RAM; the code is ARMv6-M, the core an M3).
#include "py/runtime.h"
#include "py/mphal.h"
#include "py/stream.h"
#include "shared/runtime/interrupt_char.h"
#include "uart.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define SYST_CSR REG(0xE000E010)
#define SYST_RVR REG(0xE000E014)
#define SYST_CVR REG(0xE000E018)
#define SCB_VTOR REG(0xE000ED08)
#define SCB_CCR REG(0xE000ED14)
#define NVIC_ISER0 REG(0xE000E100)
#define CCR_UNALIGN_TRP (1u << 3)

// CMSDK APB UART (both machines).
#define UART_DATA REG(UCZ_UART0_BASE + 0x00)
#define UART_STATE REG(UCZ_UART0_BASE + 0x04)
#define UART_CTRL REG(UCZ_UART0_BASE + 0x08)
#define UART_INTSTATUS REG(UCZ_UART0_BASE + 0x0C)
#define UART_BAUDDIV REG(UCZ_UART0_BASE + 0x10)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TX_EN (1u << 0)
#define UART_CTRL_RX_EN (1u << 1)
#define UART_CTRL_RX_INTEN (1u << 3)
#define UART_INT_RX (1u << 1)

#define TICKS_PER_MS (UCZ_SYSCLK_HZ / 1000)
#define UCZ_ANY_IRQ (-1)

static volatile uint32_t ticks_ms;
static volatile uint8_t rx_buf[1024];  // power of two: index masks
static volatile uint32_t rx_head, rx_tail;  // written by the IRQ / by the reader only

// The vector table of the port lists only the 16 system exceptions; ours, in RAM, adds SysTick
// and the UART IRQ (VTOR exists on the emulated M3/M33; the table is aligned to its size).
#define N_VECTORS (16 + 64)
static uint32_t vectors[N_VECTORS] __attribute__((aligned(512)));

static void systick_handler(void) {
    ticks_ms += 1;
}

static void uart_rx_handler(void) {
    UART_INTSTATUS = UART_INT_RX;
    while (UART_STATE & UART_STATE_RXFULL) {
        int c = UART_DATA & 0xff;
        if (c == mp_interrupt_char) {
            mp_sched_keyboard_interrupt();
            continue;  // consumed, as a board's USB stack consumes its interrupt char
        }
        uint32_t next = (rx_head + 1) & (sizeof(rx_buf) - 1);
        if (next != rx_tail) {  // full: QEMU waits for the guest, so this only drops on abuse
            rx_buf[rx_head] = c;
            rx_head = next;
        }
    }
}

void uart_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
}

void ucz_board_init(void) {
    static int done;
    if (done) {
        return;  // soft reset: the hardware state carries over
    }
    done = 1;
    const uint32_t *rom = (const uint32_t *)SCB_VTOR;
    for (int i = 0; i < 16; i++) {
        vectors[i] = rom[i];
    }
    for (int i = 16; i < N_VECTORS; i++) {
        vectors[i] = rom[3];  // unexpected IRQs report like a HardFault
    }
    vectors[15] = (uint32_t)systick_handler;
    #if UCZ_UART0_RX_IRQ == UCZ_ANY_IRQ
    // The machine's UART IRQ line is not pinned down here: every external vector checks the
    // UART (no other device is set to interrupt), and every line is enabled.
    for (int i = 16; i < N_VECTORS; i++) {
        vectors[i] = (uint32_t)uart_rx_handler;
    }
    REG(0xE000E104) = 0xffffffff;  // NVIC_ISER1
    NVIC_ISER0 = 0xffffffff;
    #else
    vectors[16 + UCZ_UART0_RX_IRQ] = (uint32_t)uart_rx_handler;
    NVIC_ISER0 = 1u << UCZ_UART0_RX_IRQ;
    #endif
    SCB_VTOR = (uint32_t)vectors;
    SYST_RVR = TICKS_PER_MS - 1;
    SYST_CVR = 0;
    SYST_CSR = 7;  // processor clock, interrupt, enable
    UART_CTRL |= UART_CTRL_RX_INTEN;
    #if UCZ_UNALIGN_TRAP
    SCB_CCR |= CCR_UNALIGN_TRP;
    #endif
}

#if MICROPY_VFS_FAT
#include "lib/oofatfs/ff.h"
// FAT timestamps: the board has no calendar; files are dated 2025-01-01 00:00.
DWORD get_fattime(void) {
    return ((2025 - 1980) << 25) | (1 << 21) | (1 << 16);
}
#endif

void ucz_board_wfi(void) {
    __asm volatile ("wfi");
}

mp_uint_t mp_hal_ticks_ms(void) {
    return ticks_ms;
}

// Clock cycles since boot: ms, count, ms again (a SysTick between the reads: the count wrapped).
static uint32_t cycles(uint32_t *ms_out) {
    uint32_t ms, cvr;
    do {
        ms = ticks_ms;
        cvr = SYST_CVR;
    } while (ms != ticks_ms);
    *ms_out = ms;
    return TICKS_PER_MS - 1 - cvr;  // cycles into the current ms
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t ms, c = cycles(&ms);
    return ms * 1000 + c / (TICKS_PER_MS / 1000);
}

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t ms, c = cycles(&ms);
    return ms * TICKS_PER_MS + c;
}

void mp_hal_delay_us(mp_uint_t us) {
    mp_uint_t t0 = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - t0 < us) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms) {
    // Spins (see MICROPY_INTERNAL_WFE) and runs scheduled callbacks: Ctrl-C interrupts a sleep.
    mp_uint_t t0 = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - t0 < ms) {
        mp_handle_pending(true);
    }
}

uint64_t mp_hal_time_ns(void) {
    return (uint64_t)mp_hal_ticks_ms() * 1000000;
}

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && rx_head != rx_tail) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;  // output blocks until the UART takes it
    }
    return ret;
}

int mp_hal_stdin_rx_chr(void) {
    while (rx_head == rx_tail) {
        mp_event_wait_indefinite();  // sleeps until the UART (or SysTick) interrupt
    }
    int c = rx_buf[rx_tail];
    rx_tail = (rx_tail + 1) & (sizeof(rx_buf) - 1);
    return c;
}

int uart_rx_chr(void) {
    return UART_RX_NO_CHAR;  // unused: input comes through the ring buffer
}

void uart_tx_strn(const char *buf, size_t len) {
    for (size_t i = 0; i < len; ++i) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = buf[i];
    }
}

// ucz_board.sync_ticks(): restart the 1 ms tick period now. Under -icount a run repeats
// exactly only if the SysTick interrupt falls on the same instructions of it; what ran before
// the run (the host's bytes arrive in real time) leaves the period at any phase. The clock
// moves on to the next millisecond, never back. ucz calls it where a run starts.
static mp_obj_t ucz_board_sync_ticks(void) {
    SYST_CVR = 0;  // the counter reloads on the next clock edge; no interrupt from this write
    REG(0xE000ED04) = 1u << 25;  // ICSR.PENDSTCLR: a tick already pending belongs to before
    ticks_ms += 1;
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(ucz_board_sync_ticks_obj, ucz_board_sync_ticks);

static const mp_rom_map_elem_t ucz_board_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_ucz_board) },
    { MP_ROM_QSTR(MP_QSTR_sync_ticks), MP_ROM_PTR(&ucz_board_sync_ticks_obj) },
};
static MP_DEFINE_CONST_DICT(ucz_board_globals, ucz_board_globals_table);

const mp_obj_module_t ucz_board_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&ucz_board_globals,
};
MP_REGISTER_MODULE(MP_QSTR_ucz_board, ucz_board_module);
