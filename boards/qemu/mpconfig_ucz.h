// ucompressd's additions to MicroPython's ports/qemu configuration (passed as MP_CONFIGFILE by
// common.mk). The port's own header comes first; we only switch on what the ucz firmware needs
// and the 1.25 port leaves off: time (emulated-time ticks), select + asyncio (the server's
// event loop), sys.stdin/stdout.buffer (the wire), and an interrupt-driven UART (Ctrl-C while code
// runs, which mpremote needs). No _thread: these boards have one core.
#include "mpconfigport.h"

#undef MICROPY_PY_TIME
#define MICROPY_PY_TIME             (1)
#undef MICROPY_PY_SELECT
#define MICROPY_PY_SELECT           (1)
#undef MICROPY_PY_ASYNCIO
#define MICROPY_PY_ASYNCIO          (1)
#undef MICROPY_PY_SYS_STDIO_BUFFER
#define MICROPY_PY_SYS_STDIO_BUFFER (1)

// FAT as rp2 has it (ZramDisk formats blocks of up to 4 KiB).
#define MICROPY_FATFS_ENABLE_LFN    (1)
#define MICROPY_FATFS_RPATH         (2)
#define MICROPY_FATFS_MAX_SS        (4096)

#if defined(__ARM_ARCH_6M__)
// ARMv6-M (Cortex-M0/M0+, RP2040): the native/viper emitter must stay within the v6-M Thumb
// subset (the port assumes ARMv7-M), and there is no FPU for inline assembler float ops.
#undef MICROPY_EMIT_THUMB_ARMV7M
#define MICROPY_EMIT_THUMB_ARMV7M   (0)
#undef MICROPY_EMIT_INLINE_THUMB_FLOAT
#define MICROPY_EMIT_INLINE_THUMB_FLOAT (0)
#endif

// Board set-up on every (soft) boot: clock, UART receive interrupt, alignment traps.
void ucz_board_init(void);
#define MICROPY_PORT_INIT_FUNC ucz_board_init()

// Waiting with no deadline (poll on stdin only, the REPL) sleeps until an interrupt; a wait with
// a deadline spins, so that time under -icount stays a function of instructions executed.
void ucz_board_wfi(void);
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS) do { if ((int)(TIMEOUT_MS) < 0) { ucz_board_wfi(); } } while (0)
