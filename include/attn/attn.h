// The attnc umbrella header: everything an application includes.
#ifndef ATTN_INCLUDE_ATTN_ATTN_H_
#define ATTN_INCLUDE_ATTN_ATTN_H_

#include "attn/runtime.h"
#include "attn/status.h"

#endif // ATTN_INCLUDE_ATTN_ATTN_H_
