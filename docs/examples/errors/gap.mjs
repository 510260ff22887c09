// gap: an expectation no TCP could produce (refused before the program runs)
import { done } from "./probe.mjs";
done();
/* expect
C > S  S 0:0(0)
S > C  S. 0:0(0) ack 1
C > S  P. 1:4(3) ack 1
C > S  F. 5:5(0) ack 1
*/
