# qemu-m0: RP2040's instruction set (ARMv6-M, Cortex-M0+) on QEMU's mps2-an385 (a Cortex-M3:
# QEMU 7.2 has no M0 machine with useful RAM). C and viper code are ARMv6-M only, and unaligned
# word/halfword accesses fault (CCR.UNALIGN_TRP), as on an M0+.
include $(BOARD_DIR)/../common.mk
QEMU_MACHINE = mps2-an385
CFLAGS += -mcpu=cortex-m0
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M0 (ARMv6-M code, unaligned traps on)"'
CFLAGS += -DUCZ_UART0_BASE=0x40004000 -DUCZ_UART0_RX_IRQ=0 -DUCZ_SYSCLK_HZ=25000000
CFLAGS += -DUCZ_UNALIGN_TRAP=1
LDSCRIPT = $(BOARD_DIR)/mps2.ld
SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb1.o
MPY_CROSS_FLAGS += -march=armv6m
