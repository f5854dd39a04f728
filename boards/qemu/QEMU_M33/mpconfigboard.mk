# qemu-m33: the RP2350's core (ARMv8-M mainline, Cortex-M33) on QEMU's mps2-an505, running in
# the secure state it boots in: code and data in the secure alias of SSRAM1, peripherals at
# their secure addresses (0x5xxxxxxx).
include $(BOARD_DIR)/../common.mk
QEMU_MACHINE = mps2-an505
CFLAGS += -mcpu=cortex-m33
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M33 (ARMv8-M mainline)"'
CFLAGS += -DUCZ_UART0_BASE=0x50200000 -DUCZ_UART0_RX_IRQ=UCZ_ANY_IRQ -DUCZ_SYSCLK_HZ=20000000
LDSCRIPT = $(BOARD_DIR)/an505.ld
# The port's gchelper_thumb2.s declares an ARMv7-M CPU, which the linker will not mix with
# ARMv8-M objects: the C register scan instead.
SRC_C += shared/runtime/gchelper_generic.c
MPY_CROSS_FLAGS += -march=armv7m
