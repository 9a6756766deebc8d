package testutil
import ("testing";"time")
func TestAdhocLoad(t *testing.T){ r,err:=EchoLoad("127.0.0.1:44589",16,4*time.Second); t.Logf("rate %v %v",r,err)}
