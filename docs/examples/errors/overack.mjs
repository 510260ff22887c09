// overack: an ACK of more than the peer sent (refused before the program runs)
import { done } from "./probe.mjs";
done();
/* expect
C > S  S 0:0(0)
S > C  S. 0:0(0) ack 1
C > S  . 1:1(0) ack 1
C > S  F. 1:1(0) ack 1
S > C  . 1:1(0) ack 3
*/
