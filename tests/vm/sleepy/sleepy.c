// SPDX-License-Identifier: GPL-2.0
/*
 * A module whose init does not return for `seconds` (default: ten minutes), sleeping
 * uninterruptibly like a driver waiting on hardware that never answers. The suite loads
 * it to show that no kernel call holds the boot: built at test time against Debian's
 * linux-headers for the kernel the VM boots (tests/vm/build-sleepy.sh).
 */
#include <linux/delay.h>
#include <linux/module.h>

static unsigned int seconds = 600;
module_param(seconds, uint, 0444);
MODULE_PARM_DESC(seconds, "how long init sleeps");

static int __init sleepy_init(void)
{
	pr_info("sleepy: init sleeps for %u s\n", seconds);
	msleep(seconds * 1000);
	pr_info("sleepy: init returns\n");
	return 0;
}

static void __exit sleepy_exit(void)
{
}

module_init(sleepy_init);
module_exit(sleepy_exit);
MODULE_DESCRIPTION("initagent test module: an init that sleeps");
MODULE_LICENSE("GPL");
