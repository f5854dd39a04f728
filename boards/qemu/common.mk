# Shared by the ucompressd QEMU boards (included from each board's mpconfigboard.mk).
# Built by `ucompressd qemu build` (host/ucompressd/qemu.py), which passes BOARD_DIR, the heap
# (MICROPY_HEAP_SIZE, from the board profile) and FROZEN_MANIFEST.
UCZ_QEMU_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

QEMU_ARCH = arm
CFLAGS += -mthumb -mfloat-abi=soft
# uart.c then compiles to nothing: ucz_board.c drives the UART (its address differs per machine).
CFLAGS += -DQEMU_SOC_UCZ_MPS2
CFLAGS += -DMP_CONFIGFILE='"$(UCZ_QEMU_DIR)/mpconfig_ucz.h"'
SRC_C += $(UCZ_QEMU_DIR)/ucz_board.c
# ucz.zram's ZramDisk formats and mounts FAT and littlefs, as on rp2 (extmod adds the sources).
MICROPY_VFS_FAT = 1
MICROPY_VFS_LFS2 = 1
SRC_C += shared/timeutils/timeutils.c
SRC_QSTR += $(UCZ_QEMU_DIR)/ucz_board.c

# ucz_board.c provides stdin and poll from its interrupt-fed buffer: the port's polling versions
# are renamed away in their own object (then dropped by --gc-sections).
$(BUILD)/mphalport.o: CFLAGS += -Dmp_hal_stdin_rx_chr=qemu_port_stdin_rx_chr -Dmp_hal_stdio_poll=qemu_port_stdio_poll
