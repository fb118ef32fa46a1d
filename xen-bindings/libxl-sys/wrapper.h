/* What hx binds from Debian's libxen-dev (libxl, libxlutil, xentoollog). libxl_json.h is left out on purpose (it needs yajl). */
#define _GNU_SOURCE /* vasprintf: formats xentoollog's va_list messages for tracing */
#include <stdio.h>
#define LIBXL_API_VERSION 0x041400
#include <libxl.h>
#include <libxl_event.h>
#include <libxl_utils.h>
#include <xentoollog.h>
#include <libxlutil.h> /* xl.cfg parsing (xlu_cfg_*, xlu_disk_parse) */
