/*
 * tn_err_def.h - azext_webapp/_reasons.def as an X-macro. Define the entry
 * macros a list wants (KIND, PHASE, FACT, CAP, REASON), include this file,
 * and the ones left undefined expand to nothing; all five are undefined
 * again afterwards. No include guard: it is included once per list.
 */
#ifndef KIND
#define KIND(name, doc)
#endif
#ifndef PHASE
#define PHASE(name, doc)
#endif
#ifndef FACT
#define FACT(name, doc)
#endif
#ifndef CAP
#define CAP(name, n, doc)
#endif
#ifndef REASON
#define REASON(name, kind, doc)
#endif

#include "../azext_webapp/_reasons.def"

#undef KIND
#undef PHASE
#undef FACT
#undef CAP
#undef REASON
