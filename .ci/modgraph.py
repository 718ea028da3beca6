"""CI check (.ci/run): the module graph of a crate's src/: file-level nodes, edges from `crate::` and
`super::` paths (not `mod` declarations). Prints cycles (SCCs > 1), ignoring
edges from a module to its own ancestors (re-export hubs) unless -a."""
import os,re,sys
root=sys.argv[1]; strict='-a' in sys.argv
mods={}
for dp,_,fs in os.walk(root):
  for f in fs:
    if not f.endswith('.rs'): continue
    p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3].split(os.sep)
    if rel[-1]=='mod': rel=rel[:-1]
    if rel in (['lib'],['main']): rel=[]
    mods[tuple(rel)]=p
def resolve(path):
  for k in range(len(path),-1,-1):
    if tuple(path[:k]) in mods: return tuple(path[:k])
  return ()
edges={m:set() for m in mods}
pat=re.compile(r'\b((?:crate|super)(?:::(?:super|\w+|\{))+)')
for m,p in mods.items():
  src=open(p).read()
  src=re.sub(r'//[^\n]*','',src)
  # expand use-groups: take prefix before '{' and items inside (top-level only)
  for um in re.finditer(r'\buse\s+((?:crate|super)[^;]*);',src,re.S):
    u=re.sub(r'\s+','',um.group(1))
    def expand(s):
      if '{' not in s: return [s]
      i=s.index('{'); pre=s[:i]; inner=s[i+1:s.rindex('}')]
      parts=[];d=0;cur=''
      for c in inner:
        if c==',' and d==0: parts.append(cur);cur='';continue
        if c=='{':d+=1
        if c=='}':d-=1
        cur+=c
      parts.append(cur)
      out=[]
      for q in parts:
        if q: out+=expand(pre+q)
      return out
    for path in expand(u):
      segs=path.split('::')
      base=list(m) if not (os.path.basename(p)=='mod.rs' or m==()) else list(m)
      if segs[0]=='crate': tgt=segs[1:]
      else:
        cur=list(m) if os.path.basename(p) in ('mod.rs','lib.rs','main.rs') else list(m)
        # super from file a/b.rs (module a::b) -> a
        cur=list(m)
        while segs and segs[0]=='super': cur=cur[:-1]; segs=segs[1:]
        tgt=cur+[s for s in segs if s not in('self',)]
      t=resolve([s for s in tgt if s!='self'])
      if t!=m: edges[m].add(t)
  for pm in re.finditer(r'(?<![\w:])crate::(\w+(?:::\w+)*)',src):
    t=resolve(pm.group(1).split('::'))
    if t!=m: edges[m].add(t)
if not strict:
  for m in edges: edges[m]={t for t in edges[m] if not (len(t)<len(m) and m[:len(t)]==t)}
# tarjan
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
  idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
  for w in edges[v]:
    if w not in idx: sc(w);low[v]=min(low[v],low[w])
    elif w in on: low[v]=min(low[v],idx[w])
  if low[v]==idx[v]:
    comp=[]
    while True:
      w=st.pop();on.discard(w);comp.append(w)
      if w==v:break
    if len(comp)>1: out.append(comp)
for v in list(edges):
  if v not in idx: sc(v)
for comp in out:
  print('CYCLE:',', '.join('::'.join(x) or 'crate' for x in comp))
  for a in comp:
    for b in edges[a]:
      if b in comp: print('   ','::'.join(a),'->','::'.join(b))
top={}
for m,ts in edges.items():
  for t in ts:
    a=m[0] if m else 'crate'; b=t[0] if t else 'crate'
    if a!=b: top.setdefault(a,set()).add(b)
if '-t' in sys.argv:
  for a in sorted(top): print(a,'->',' '.join(sorted(top[a])))
print('cycles:',len(out))
sys.exit(1 if out else 0)
