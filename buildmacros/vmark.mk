# SPDX-License-Identifier: GPL-2.0-or-later
#
# vmark.mk - build a kernel module with vmark marks and embed its manifest.
#
# A module's Makefile is:
#
#   obj-m := mymod.o
#   include /path/to/vmark/buildmacros/vmark.mk
#
# and `make` builds the module with Kbuild, then runs `vmark-build embed` on
# every module listed in modules.order, so each .ko carries the manifest of
# its marks.  Targets: modules (the default), clean, modules_install.
#
# Variables (command line or environment):
#   KDIR         kernel build tree; default /lib/modules/$(uname -r)/build.
#                Pass KDIR=/lib/modules/<release>/build to build for a kernel
#                other than the running one; a 32-bit (i386) kernel's tree
#                works too, from an x86-64 machine (Kbuild takes -m32 from
#                the tree's CONFIG_X86_32; no 32-bit C library is needed).
#   VMARK_KDIR   the same, under a name no other Makefile uses; wins over a
#                KDIR from the environment (a KDIR on the command line wins).
#   VMARK_BUILD  the vmark-build binary; default the workspace's
#                target/release/vmark-build, else target/debug/vmark-build,
#                else vmark-build on PATH.
#   VMARK_FLAGS  extra options for `vmark-build embed`, e.g. --pointer-depth 2.

# Must be read before any other include changes MAKEFILE_LIST.
VMARK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

ifneq ($(KERNELRELEASE),)

# Kbuild pass: let the module's sources include <vmark.h> and vmark_abi.h.
ccflags-y += -I$(VMARK_ROOT)/buildmacros/include -I$(VMARK_ROOT)/shared-proto/include

else

ifneq ($(VMARK_KDIR),)
KDIR := $(VMARK_KDIR)
endif
KDIR ?= /lib/modules/$(shell uname -r)/build

VMARK_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(VMARK_ROOT)/target)
VMARK_BUILD ?= $(firstword \
	$(wildcard $(VMARK_TARGET_DIR)/release/vmark-build $(VMARK_TARGET_DIR)/debug/vmark-build) \
	$(shell command -v vmark-build 2>/dev/null))

.DEFAULT_GOAL := modules
.PHONY: modules clean modules_install

# modules.order lists the .ko (or, on newer kernels, .o) paths Kbuild built.
modules:
	$(if $(VMARK_BUILD),,$(error vmark-build not found: run `cargo build --release -p vmark-build` in $(VMARK_ROOT), or set VMARK_BUILD=/path/to/vmark-build))
	@test -d "$(KDIR)" || { echo "vmark.mk: no kernel build tree at $(KDIR): install the kernel headers or pass KDIR=/lib/modules/<release>/build" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules
	$(VMARK_BUILD) embed $(VMARK_FLAGS) $$(sed -e 's/\.o$$/.ko/' $(CURDIR)/modules.order)

modules_install:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules_install

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean

endif
