import hmac,struct,sys
def md4(m):
    m=bytearray(m); l=len(m)*8; m.append(0x80)
    while len(m)%64!=56: m.append(0)
    m+=struct.pack('<Q',l); h=[0x67452301,0xefcdab89,0x98badcfe,0x10325476]
    F=lambda x,y,z:(x&y)|(~x&z); G=lambda x,y,z:(x&y)|(x&z)|(y&z); H=lambda x,y,z:x^y^z
    rot=lambda x,n:((x<<n)|(x>>(32-n)))&0xffffffff
    for i in range(0,len(m),64):
        X=struct.unpack('<16I',m[i:i+64]); a,b,c,d=h
        for k in range(16):
            s=[3,7,11,19][k%4]; a,b,c,d=d,rot((a+F(b,c,d)+X[k])&0xffffffff,s),b,c
        for k in range(16):
            s=[3,5,9,13][k%4]; j=[0,4,8,12,1,5,9,13,2,6,10,14,3,7,11,15][k]
            a,b,c,d=d,rot((a+G(b,c,d)+X[j]+0x5a827999)&0xffffffff,s),b,c
        for k in range(16):
            s=[3,9,11,15][k%4]; j=[0,8,4,12,2,10,6,14,1,9,5,13,3,11,7,15][k]
            a,b,c,d=d,rot((a+H(b,c,d)+X[j]+0x6ed9eba1)&0xffffffff,s),b,c
        h=[(x+y)&0xffffffff for x,y in zip(h,[a,b,c,d])]
    return struct.pack('<4I',*h)
assert md4(b'abc').hex()=='a448017aaf21d8525fc10ae87aa6729d'
line,pw=sys.argv[1],sys.argv[2]
u,_,d,ch,proof,blob=line.split(':')
nt=md4(pw.encode('utf-16le'))
k=hmac.new(nt,(u.upper()+d).encode('utf-16le'),'md5').digest()
print(hmac.new(k,bytes.fromhex(ch)+bytes.fromhex(blob),'md5').hexdigest()==proof)
