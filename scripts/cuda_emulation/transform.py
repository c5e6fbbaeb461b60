# K<<<cfg>>>(args)  ->  ::emu::launch(cfg)([&] { K(args); }): the CUDA launch syntax as a call
# of the host emulation (fake/cuda_runtime.h). Usage: transform.py SRC DST
import sys, re
def transform(s):
    out = []
    i = 0
    while True:
        j = s.find('<<<', i)
        if j < 0:
            out.append(s[i:]); break
        # kernel expression: walk back over identifier chars and balanced <...>
        k = j
        depth = 0
        while k > 0:
            ch = s[k-1]
            if ch == '>': depth += 1; k -= 1; continue
            if ch == '<': depth -= 1; k -= 1; continue
            if depth > 0 or ch.isalnum() or ch in '_:': k -= 1; continue
            break
        name = s[k:j]
        e = s.find('>>>', j)
        cfg = s[j+3:e]
        p = e + 3
        while s[p].isspace(): p += 1
        assert s[p] == '(', s[p:p+40]
        d = 0; q = p
        while True:
            if s[q] == '(': d += 1
            elif s[q] == ')':
                d -= 1
                if d == 0: break
            q += 1
        args = s[p+1:q]
        out.append(s[i:k])
        out.append('::emu::launch(%s)([&] { %s(%s); })' % (cfg, name, args))
        i = q + 1
    return ''.join(out)
src, dst = sys.argv[1], sys.argv[2]
open(dst, 'w').write(transform(open(src).read()))
