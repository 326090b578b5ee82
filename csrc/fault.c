#include "fault.h"

#ifdef RINGLET_FAULTS

#include <errno.h>

static struct {
    unsigned skip, count, hits;
    int error;
} faults[RL_FAULT_KINDS];

void rl_fault_arm(int kind, unsigned skip, unsigned count, int error)
{
    if (kind < 0 || kind >= RL_FAULT_KINDS)
        return;
    faults[kind].skip = skip;
    faults[kind].count = count;
    faults[kind].hits = 0;
    if (kind == RL_FAULT_ALLOC)
        error = -ENOMEM;
    else if (kind == RL_FAULT_SHORT || kind == RL_FAULT_CANCEL)
        error = 1;
    faults[kind].error = error;
}

int rl_fault_hit(int kind)
{
    if (faults[kind].count == 0)
        return 0;
    if (faults[kind].skip > 0) {
        faults[kind].skip--;
        return 0;
    }
    faults[kind].count--;
    faults[kind].hits++;
    return faults[kind].error;
}

int rl_fault_armed(void)
{
    for (int k = 0; k < RL_FAULT_KINDS; k++)
        if (faults[k].count)
            return 1;
    return 0;
}

unsigned rl_fault_hits(int kind)
{
    return kind >= 0 && kind < RL_FAULT_KINDS ? faults[kind].hits : 0;
}

#else
/* ISO C wants a translation unit to declare something. */
typedef int rl_fault_unused;
#endif
