"""CI check (.ci/run): no function in src/ longer than LIMIT lines (default
80), except the declarative tables listed in EXEMPT. Counts from the `fn` line
to its closing brace, by brace depth outside strings and comments."""
import os,re,sys
root=sys.argv[1]; lim=int(sys.argv[2]) if len(sys.argv)>2 else 80
# (file name, function): tables read as data, one row per line
EXEMPT={('routes.rs','table')}
long=[]
fnre=re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)')
for dp,_,fs in os.walk(root):
  for f in fs:
    if not f.endswith('.rs'): continue
    p=os.path.join(dp,f); L=open(p).read().split('\n')
    i=0
    while i<len(L):
      m=fnre.match(L[i])
      if m:
        depth=0; started=False; j=i
        while j<len(L):
          s=re.sub(r'"([^"\\]|\\.)*"','""',L[j]); s=re.sub(r"'.'","''",s); s=s.split('//')[0]
          for c in s:
            if c=='{': depth+=1; started=True
            elif c=='}': depth-=1
          if started and depth<=0: break
          if not started and s.rstrip().endswith(';'): break
          j+=1
        n=j-i+1
        if n>lim and (f,m.group(6)) not in EXEMPT: long.append((n,p,m.group(6),i+1))
      i+=1
for n,p,name,line in sorted(long,reverse=True): print(f'{p}:{line}: fn {name} is {n} lines (limit {lim})')
sys.exit(1 if long else 0)
